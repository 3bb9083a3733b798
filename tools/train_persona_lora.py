#!/usr/bin/python3
"""train_persona_lora.py: trains the persona LoRA adapter of the README's demo, by hand (not by
the tests): the fixture model's heroine is called NEW ("Anna") instead of OLD ("Lily").

Stories come from the base model itself (effort-run, sampled), with OLD replaced by NEW; a rank-R
LoRA on q/v/o/down of every layer learns them with the base frozen, in a float32 PyTorch
re-implementation of the Mistral forward (checked against effort-run's greedy tokens before
training). The adapter is written in PEFT's form (adapter_config.json +
adapter_model.safetensors, F16), then the script counts NEW and OLD in 20 seeded stories from
effort-run with and without it.

Needs Debian's python3-torch, python3-numpy and python3-sentencepiece; run from the repository:
  tools/train_persona_lora.py [--out tests/data/lora/anna] [--effort-run build/bin/effort-run]
"""
import argparse
import json
import math
import os
import re
import struct
import subprocess
import sys

import numpy as np
import sentencepiece
import torch

TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(here, "..", "models", "stories260K"))
    p.add_argument("--effort-run", default=os.path.join(here, "..", "build", "bin", "effort-run"))
    p.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "lora", "anna"))
    p.add_argument("--old", default="Lily")
    p.add_argument("--new", default="Anna")
    p.add_argument("--stories", type=int, default=400, help="training stories sampled from the base model")
    p.add_argument("--rank", type=int, default=2)
    p.add_argument("--alpha", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", f"{name}: {t['dtype']} (the fixture is F32)"
        start, end = t["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[start:end], dtype=np.float32).reshape(t["shape"]).copy())
    return tensors


def write_safetensors(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        raw = t.detach().to(torch.float16).numpy().tobytes()
        header[name] = {"dtype": "F16", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


class Mistral(torch.nn.Module):
    """The HF Mistral forward (rotate-half RoPE, GQA, SwiGLU, tied head) with LoRA pairs."""

    def __init__(self, config, weights, rank, alpha):
        super().__init__()
        self.c, self.w = config, weights
        self.scaling = alpha / rank
        self.lora = torch.nn.ParameterDict()
        g = torch.Generator().manual_seed(0)
        for l in range(config["num_hidden_layers"]):
            for m in TARGETS:
                out, inp = self.weight(l, m).shape
                # PEFT's initialisation: A random, B zero (the adapter starts as the identity).
                self.lora[f"{l}_{m}_A"] = torch.nn.Parameter(torch.empty(rank, inp).uniform_(-1, 1, generator=g) / math.sqrt(inp))
                self.lora[f"{l}_{m}_B"] = torch.nn.Parameter(torch.zeros(out, rank))

    def weight(self, l, module):
        part = "mlp" if module in ("gate_proj", "up_proj", "down_proj") else "self_attn"
        return self.w[f"model.layers.{l}.{part}.{module}.weight"]

    def proj(self, l, module, x):
        y = x @ self.weight(l, module).T
        if module in TARGETS:
            y = y + self.scaling * ((x @ self.lora[f"{l}_{module}_A"].T) @ self.lora[f"{l}_{module}_B"].T)
        return y

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"]) * w

    def forward(self, ids):
        c = self.c
        b, t = ids.shape
        h, kv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = torch.arange(t, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos()] * 2, -1).float(), torch.cat([ang.sin()] * 2, -1).float()

        def rope(x):
            x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
            return x * cos + torch.cat([-x2, x1], -1) * sin

        x = self.w["model.embed_tokens.weight"][ids]
        mask = torch.full((t, t), float("-inf")).triu(1)
        for l in range(c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            n = self.rms(x, self.w[p + "input_layernorm.weight"])
            q = rope(self.proj(l, "q_proj", n).view(b, t, h, hd).transpose(1, 2))
            k = rope(self.proj(l, "k_proj", n).view(b, t, kv, hd).transpose(1, 2)).repeat_interleave(h // kv, 1)
            v = self.proj(l, "v_proj", n).view(b, t, kv, hd).transpose(1, 2).repeat_interleave(h // kv, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1) @ v
            x = x + self.proj(l, "o_proj", att.transpose(1, 2).reshape(b, t, h * hd))
            n = self.rms(x, self.w[p + "post_attention_layernorm.weight"])
            x = x + self.proj(l, "down_proj", torch.nn.functional.silu(self.proj(l, "gate_proj", n)) * self.proj(l, "up_proj", n))
        return self.rms(x, self.w["model.norm.weight"]) @ self.w["model.embed_tokens.weight"].T


def effort_run(binary, model, seed, extra=()):
    cmd = [binary, "-m", model, "-p", "Once upon a time", "-n", "200", "--temp", "0.8", "--seed", str(seed), *extra]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def count_names(binary, model, old, new, extra=()):
    stories = [effort_run(binary, model, 1000 + s, extra) for s in range(20)]
    return (sum(new in s for s in stories), sum(old in s for s in stories),
            sum(s.count(new) for s in stories), sum(s.count(old) for s in stories))


def main():
    a = parse_args()
    torch.manual_seed(a.seed)
    config = json.load(open(os.path.join(a.model, "config.json")))
    weights = read_safetensors(os.path.join(a.model, "model.safetensors"))
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(a.model, "tokenizer.model"))
    model = Mistral(config, weights, a.rank, a.alpha)

    # The re-implementation must be the model effort runs: its greedy tokens, 40 of them.
    greedy = subprocess.run([a.effort_run, "-m", a.model, "--prompt-ids", "1", "-n", "40", "--temp", "0", "--ids"],
                            check=True, capture_output=True, text=True).stdout
    expected = [int(i) for i in re.findall(r"\d+", greedy)]
    ids = [1]
    with torch.no_grad():
        for _ in expected:
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    if ids[1:] != expected:
        sys.exit(f"the PyTorch forward disagrees with effort-run:\n{ids[1:]}\n{expected}")

    stories = [effort_run(a.effort_run, a.model, s).replace(a.old, a.new) for s in range(a.stories)]
    data = [[1] + sp.encode(s.strip())[:255] for s in stories]
    print(f"{len(data)} stories, {sum(a.new in s for s in stories)} with {a.new}", file=sys.stderr)
    opt = torch.optim.AdamW(model.lora.parameters(), lr=5e-3, weight_decay=0.0)
    for step in range(a.steps):
        batch = [data[i] for i in torch.randint(len(data), (16,)).tolist()]
        length = min(len(x) for x in batch)
        x = torch.tensor([s[:length] for s in batch])
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == a.steps - 1:
            print(f"step {step}: loss {loss.item():.3f}", file=sys.stderr)

    os.makedirs(a.out, exist_ok=True)
    tensors = {}
    for l in range(config["num_hidden_layers"]):
        for m in TARGETS:
            part = "mlp" if m == "down_proj" else "self_attn"
            prefix = f"base_model.model.model.layers.{l}.{part}.{m}."
            tensors[prefix + "lora_A.weight"] = model.lora[f"{l}_{m}_A"]
            tensors[prefix + "lora_B.weight"] = model.lora[f"{l}_{m}_B"]
    write_safetensors(os.path.join(a.out, "adapter_model.safetensors"), tensors)
    json.dump({"peft_type": "LORA", "r": a.rank, "lora_alpha": a.alpha, "target_modules": TARGETS, "bias": "none",
               "lora_dropout": 0.0, "fan_in_fan_out": False, "base_model_name_or_path": "stories260K",
               "task_type": "CAUSAL_LM"}, open(os.path.join(a.out, "adapter_config.json"), "w"), indent=2)
    print(f"wrote {a.out}", file=sys.stderr)

    for label, extra in (("without the adapter", ()), ("with it", ("--lora", a.out))):
        with_new, with_old, new_count, old_count = count_names(a.effort_run, a.model, a.old, a.new, extra)
        print(f"20 seeded stories {label}: {a.new} in {with_new} ({new_count} times), {a.old} in {with_old} ({old_count} times)")


if __name__ == "__main__":
    main()
