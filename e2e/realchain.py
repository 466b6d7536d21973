"""The tiny real chain (TrainJob -> FineTune -> EvalRun), shared by `make demo` in real mode
(e2e/demo.py) and tests/integration/test_real_chain.py: the manifests, sized for the real
node's 2 CPUs, the script that makes the tiny model, tokenizer and corpus in a pod, and the
small SFT and eval sets shipped in the repo (e2e/data/chain/).

Claims: ``corpus`` (inputs: the made assets plus the repo's data under sft/ and eval/) and
``models`` (every stage's output). Standard library only (the demo runs without the venv).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "chain"
# repo file -> path on the corpus claim
DATA_FILES = {
    "sft_alpaca.json": "sft/sft_alpaca.json",
    "repeat_qa.jsonl": "eval/repeat_qa.jsonl",
    "who_mcq.jsonl": "eval/who_mcq.jsonl",
}
CLAIMS = ("corpus", "models")
# The image the assets are made in: the finetune image's transformers (4.48) is the oldest of
# the images, and a tokenizer saved by a newer one (tokenizer_class TokenizersBackend) does not
# load in it; every image loads one saved by 4.48.
ASSETS_IMAGE = "finetune"
IMAGES = ("pretrain", "finetune", "eval")
API = "internlm.io/v1alpha1"

# A byte-level BPE tokenizer trained here, a random Llama of ~150k parameters and a tokenised
# corpus (.npy of token ids: data.format tokenized), all on the corpus claim; the result as the
# pod's termination message.
MAKE_ASSETS = """
import json, random
from pathlib import Path
import numpy as np, torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

root = Path("/mnt/corpus")
rng = random.Random(0)
names = ["alice", "bob", "carol", "dave", "erin", "frank"]
verbs = ["likes", "sees", "helps", "calls", "meets", "finds"]
things = ["the cat", "a dog", "the red ball", "some tea", "a small box", "the old map"]
sent = lambda: f"{rng.choice(names)} {rng.choice(verbs)} {rng.choice(things)}."
docs = [" ".join(sent() for _ in range(rng.randint(3, 8))) for _ in range(400)]
special = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(docs, trainers.BpeTrainer(
    vocab_size=600, special_tokens=special,
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
hf_tok = PreTrainedTokenizerFast(
    tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
    pad_token="<pad>", model_input_names=["input_ids", "attention_mask"],
    additional_special_tokens=["<|im_start|>", "<|im_end|>"])
# a chat model's tokenizer: OpenCompass (HuggingFacewithChatTemplate) and the servers apply it
hf_tok.chat_template = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\\n{{ m['content'] }}<|im_end|>\\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}")
model_dir = root / "tiny-llama"
hf_tok.save_pretrained(model_dir)
config = LlamaConfig(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=192,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     max_position_embeddings=512, bos_token_id=hf_tok.bos_token_id,
                     eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id,
                     tie_word_embeddings=False)
torch.manual_seed(0)
model = LlamaForCausalLM(config)
model.save_pretrained(model_dir, safe_serialization=True)
ids = []
for d in docs:
    ids += hf_tok(d, add_special_tokens=False)["input_ids"] + [hf_tok.eos_token_id]
(root / "tokenized").mkdir(exist_ok=True)
np.save(root / "tokenized" / "shard-00000.npy", np.asarray(ids, dtype=np.int32))
out = {"params": sum(p.numel() for p in model.parameters()), "tokens": len(ids),
       "vocab": len(hf_tok), "chat": hf_tok.apply_chat_template(
           [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)}
open("/dev/termination-log", "w").write(json.dumps(out))
"""

# real-0 has 2 CPUs; its 8 GPUs are a node status patch (the workloads run on CPU)
CPU = {"gpusPerNode": 1, "cpu": "1", "memory": "3Gi"}
TRAIN_STEPS = 8


def trainjob(name: str = "base") -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {
            "framework": "deepspeed",
            "model": {"source": {"pvc": {"claimName": "corpus", "path": "tiny-llama"}}},
            "data": {"pvc": {"claimName": "corpus", "path": "tokenized"}, "format": "tokenized"},
            "output": {"pvc": {"claimName": "models", "path": f"trainjobs/{name}"}},
            "nodes": 1,
            "resources": {**CPU, "cpu": "1500m"},
            "parallelism": {"zeroStage": 2},
            "optimization": {
                "learningRate": 0.003,
                "minLearningRate": 0.0003,
                "lrSchedule": "cosine",
                "globalBatchSize": 4,
                "microBatchSize": 2,
                "seqLength": 128,
                "maxSteps": TRAIN_STEPS,
                "precision": "fp32",
            },
            "checkpoint": {"interval": 4, "keep": 1, "resume": True},
            "runPolicy": {"backoffLimit": 1},
        },
    }


def finetune(name: str = "sft", trainjob: str = "base") -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "FineTune",
        "metadata": {"name": name},
        "spec": {
            "model": {"fromResource": {"kind": "TrainJob", "name": trainjob, "output": "model"}},
            "method": "lora",
            "lora": {"r": 8, "alpha": 16, "dropout": 0.05},
            "dataset": {
                "pvc": {"claimName": "corpus", "path": DATA_FILES["sft_alpaca.json"]},
                "format": "alpaca",
            },
            "template": "internlm2_chat",
            "hyperparameters": {
                "epochs": 1,
                "learningRate": 0.001,
                "maxLength": 256,
                "batchSize": 2,
                "gradientAccumulation": 1,
                "packing": True,
                "warmupRatio": 0,
            },
            "deepspeedStage": 0,  # XTuner's DeepSpeed path needs CUDA
            "nodes": 1,
            "resources": {**CPU, "cpu": "1500m", "memory": "4Gi"},
            "produce": "both",
            "output": {"pvc": {"claimName": "models", "path": f"finetunes/{name}"}},
            "runPolicy": {"backoffLimit": 1},
        },
    }


# A gate every run passes (any score is >= 0: what it shows is that OpenCompass produced the
# score and the operator matched it by name) and one no tiny random model can pass (repeating
# six sentences word for word).
GATE_PASS = [{"dataset": "who_mcq", "metric": "accuracy", "min": 0}]
GATE_FAIL = [
    {"dataset": "who_mcq", "metric": "accuracy", "min": 0},
    {"dataset": "repeat_qa", "metric": "accuracy", "min": 100},
]


def evalrun(name: str, thresholds: list[dict[str, Any]], finetune: str = "sft") -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "EvalRun",
        "metadata": {"name": name},
        "spec": {
            "target": {
                "model": {
                    "fromResource": {"kind": "FineTune", "name": finetune, "output": "merged"}
                }
            },
            "customDatasets": [
                {
                    "name": "repeat_qa",
                    "format": "qa",
                    "pvc": {"claimName": "corpus", "path": DATA_FILES["repeat_qa.jsonl"]},
                },
                {
                    "name": "who_mcq",
                    "format": "mcq",
                    "pvc": {"claimName": "corpus", "path": DATA_FILES["who_mcq.jsonl"]},
                },
            ],
            "generation": {"maxOutLen": 12, "batchSize": 6, "temperature": 0},
            "thresholds": thresholds,
            "output": {"pvc": {"claimName": "models", "path": f"evalruns/{name}"}},
            "resources": {**CPU, "memory": "4Gi"},
            "runPolicy": {"backoffLimit": 0},
        },
    }


def assets_pod(image: str, name: str = "make-assets") -> dict[str, Any]:
    """The pod that runs MAKE_ASSETS with the corpus claim at /mnt/corpus."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", MAKE_ASSETS],
                    "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
                    "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "volumeMounts": [{"name": "corpus", "mountPath": "/mnt/corpus"}],
                }
            ],
            "volumes": [{"name": "corpus", "persistentVolumeClaim": {"claimName": "corpus"}}],
        },
    }


SERVED_NAME = "tiny-chat"
SERVING_IMAGES = ("serve", "agent")


def modelserve(name: str = "serve", finetune: str = "sft", gate: str = "gate") -> dict[str, Any]:
    """The merged model behind `transformers serve` on CPU, once EvalRun ``gate`` passed."""
    return {
        "apiVersion": API,
        "kind": "ModelServe",
        "metadata": {"name": name},
        "spec": {
            "model": {"fromResource": {"kind": "FineTune", "name": finetune, "output": "merged"}},
            "engine": "transformers",  # LMDeploy is CUDA-only
            "servedModelName": SERVED_NAME,
            "replicas": 1,
            "gate": {"evalRun": gate},
            "resources": {"gpusPerNode": 0, "cpu": "1", "memory": "3Gi"},
        },
    }


def agent(name: str = "agent", serve: str = "serve") -> dict[str, Any]:
    """A Lagent agent on the ModelServe (through its Service DNS name) with AgentLego's
    Calculator."""
    return {
        "apiVersion": API,
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {
            "llm": {"modelServe": serve, "temperature": 0, "maxNewTokens": 24},
            "agentType": "internlm2",
            "tools": [{"name": "Calculator"}],
            "maxTurns": 2,
            "replicas": 1,
            "resources": {"cpu": "500m", "memory": "1Gi"},
        },
    }
