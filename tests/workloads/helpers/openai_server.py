"""A small OpenAI-compatible server for tests: serves a local Hugging Face model with
transformers' generate (greedy unless temperature > 0) on 127.0.0.1. Not a fake: every answer
is what the model generates. Logs each request to --log (jsonl).

python openai_server.py --model DIR --port N [--name NAME] [--log FILE]
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
import transformers

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--name", default="internlm2-tiny")
ap.add_argument("--log")
args = ap.parse_args()

tok = transformers.AutoTokenizer.from_pretrained(args.model)
model = transformers.AutoModelForCausalLM.from_pretrained(args.model).eval()
END = tok.convert_tokens_to_ids("<|im_end|>")
STOP_IDS = [i for i in {END, tok.eos_token_id} if i is not None]
lock = threading.Lock()


def generate(messages, max_tokens, temperature, stop):
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    kw = {"do_sample": False}
    if temperature and temperature > 0:
        kw = {"do_sample": True, "temperature": float(temperature)}
    with lock, torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=int(max_tokens),
            eos_token_id=STOP_IDS,
            pad_token_id=tok.pad_token_id,
            **kw,
        )
    new = out[0, ids.shape[1] :]
    finish = "stop" if len(new) and int(new[-1]) in STOP_IDS else "length"
    text = tok.decode(new, skip_special_tokens=True)
    for s in stop or []:
        if s and s in text:
            text, finish = text.split(s)[0], "stop"
    return text, int(ids.shape[1]), len(new), finish


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, code, data):
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path in ("/v1/models", "/models"):
            self.send(
                200,
                {
                    "object": "list",
                    "data": [{"id": args.name, "object": "model", "owned_by": "test"}],
                },
            )
        elif self.path == "/health":
            self.send(200, {})
        else:
            self.send(404, {"error": {"message": "not found", "code": "not_found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if args.log:
            with open(args.log, "a") as f:
                f.write(json.dumps({"path": self.path, "body": body}) + "\n")
        if self.path != "/v1/chat/completions":
            self.send(404, {"error": {"message": "not found", "code": "not_found"}})
            return
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else stop
        text, n_in, n_out, finish = generate(
            body["messages"], body.get("max_tokens") or 256, body.get("temperature"), stop
        )
        self.send(
            200,
            {
                "id": f"chatcmpl-{time.time_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", args.name),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "message": {"role": "assistant", "content": text},
                    }
                ],
                "usage": {
                    "prompt_tokens": n_in,
                    "completion_tokens": n_out,
                    "total_tokens": n_in + n_out,
                },
            },
        )

    def log_message(self, *a):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", args.port), H)
print(f"serving {args.model} as {args.name} on 127.0.0.1:{args.port}", flush=True)
srv.serve_forever()
