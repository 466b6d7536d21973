"""Build the tiny assets every workload test uses, offline: a byte-level BPE tokenizer trained
here with `tokenizers`, a randomly initialised Llama-style model of a few hundred thousand
parameters, a pretraining corpus, an SFT set and small eval sets.

Run in an image environment: python make_tiny.py OUT_DIR
"""

import json
import random
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(0)

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]
VERBS = ["likes", "sees", "helps", "calls", "meets", "finds"]
THINGS = ["the cat", "a dog", "the red ball", "some tea", "a small box", "the old map"]


def sentence() -> str:
    return f"{rng.choice(NAMES)} {rng.choice(VERBS)} {rng.choice(THINGS)}."


docs = [" ".join(sentence() for _ in range(rng.randint(3, 8))) for _ in range(400)]
(out / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))

SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(
    vocab_size=600,
    special_tokens=SPECIAL,
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
)
extra = ["Thought: Action: Action Input: Observation: Final Answer: PythonInterpreter 0123456789"]
tok.train_from_iterator(docs + extra * 20, trainer)

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
hf_tok = PreTrainedTokenizerFast(
    tokenizer_object=tok,
    bos_token="<s>",
    eos_token="</s>",
    unk_token="<unk>",
    pad_token="<pad>",
    model_input_names=["input_ids", "attention_mask"],
    additional_special_tokens=["<|im_start|>", "<|im_end|>"],
)
hf_tok.chat_template = CHAT_TEMPLATE
hf_tok.save_pretrained(out / "tokenizer")

config = LlamaConfig(
    vocab_size=len(hf_tok),
    hidden_size=64,
    intermediate_size=192,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    bos_token_id=hf_tok.bos_token_id,
    eos_token_id=hf_tok.eos_token_id,
    pad_token_id=hf_tok.pad_token_id,
    tie_word_embeddings=False,
)
import torch  # noqa: E402

torch.manual_seed(0)
model = LlamaForCausalLM(config)
model.save_pretrained(out / "model", safe_serialization=True)
hf_tok.save_pretrained(out / "model")
n_params = sum(p.numel() for p in model.parameters())
(out / "model_config.json").write_text(json.dumps(config.to_diff_dict()))

# SFT data (alpaca format) for XTuner
sft = []
for _ in range(64):
    s = sentence()
    sft.append({"instruction": "Repeat the sentence.", "input": s, "output": s})
(out / "alpaca.json").write_text(json.dumps(sft))

# eval sets in OpenCompass' custom dataset formats
qa = [{"question": f"Repeat: {s}", "answer": s} for s in (sentence() for _ in range(6))]
(out / "tiny_qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa))
mcq = []
for _ in range(6):
    name = rng.choice(NAMES)
    mcq.append(
        {
            "question": f"Who is {name}?",
            "A": name,
            "B": "nobody",
            "C": "the cat",
            "D": "a dog",
            "answer": "A",
        }
    )
(out / "tiny_mcq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mcq))

print(json.dumps({"params": n_params, "vocab": len(hf_tok)}))
