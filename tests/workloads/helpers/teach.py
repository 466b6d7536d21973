"""Teach a tiny model to answer given chat prompts with given replies (greedy), by training it
on exactly those (prompt, reply) pairs until it reproduces them. Used to give the random tiny
model a real, deterministic tool-calling behaviour for the agent test.

python teach.py MODEL_DIR PAIRS_JSON OUT_DIR   (PAIRS_JSON: [{"messages": [...], "reply": str}])
"""

import json
import sys

import torch
import transformers

src, pairs_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
tok = transformers.AutoTokenizer.from_pretrained(src)
model = transformers.AutoModelForCausalLM.from_pretrained(src)
end = "<|im_end|>"
with open(pairs_path) as f:
    pairs = json.load(f)
batches = []
for p in pairs:
    prompt = tok.apply_chat_template(p["messages"], tokenize=False, add_generation_prompt=True)
    a = tok(prompt, add_special_tokens=False).input_ids
    b = tok(p["reply"] + end, add_special_tokens=False).input_ids
    ids = torch.tensor([a + b])
    labels = torch.tensor([[-100] * len(a) + b])
    batches.append((ids, labels, len(a), p["reply"]))
torch.manual_seed(0)
opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
model.train()


def reproduces() -> bool:
    model.eval()
    ok = True
    with torch.no_grad():
        for ids, _, n, reply in batches:
            g = model.generate(
                ids[:, :n],
                attention_mask=torch.ones_like(ids[:, :n]),
                max_new_tokens=ids.shape[1] - n + 2,
                do_sample=False,
                eos_token_id=tok.convert_tokens_to_ids(end),
                pad_token_id=tok.pad_token_id,
            )
            ok &= tok.decode(g[0, n:], skip_special_tokens=True) == reply
    model.train()
    return ok


for step in range(1, 601):
    loss = sum(model(input_ids=i, labels=lab).loss for i, lab, _, _ in batches) / len(batches)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 25 == 0 and loss.item() < 0.05 and reproduces():
        break
else:
    sys.exit(f"the model did not learn the replies (loss {loss.item():.4f})")
model.save_pretrained(out)
tok.save_pretrained(out)
print(json.dumps({"steps": step, "loss": loss.item()}))
