#!/usr/bin/python3
"""Golden data for lspo's GPT-2 engine, from PyTorch (Debian's python3-torch 1.13).

For each config below this script writes, under tests/ref/<name>/:
  config.json, model.safetensors   a seeded random GPT-2 (HF names, Conv1D (in, out) weights, F32)
  golden.bin                       inputs, targets and the reference results (format below)
The model is HF transformers' GPT-2 written out in plain torch (pre-LN blocks, fused c_attn,
causal softmax attention, gelu_new, LN eps 1e-5, LM head tied to wte, mean cross-entropy) and
run in float64, so the reference carries no float32 rounding of its own.

golden.bin, little endian:
  int32 magic 20251125, version 1, vocab, n_positions, n_embd, n_layer, n_head, B, T, nfloats, nsteps
  float32 lr, beta1, beta2, eps, weight_decay, clip
  int32 inputs (B*T), targets (B*T)
  float32 loss, logits (B*T, V), grads (nfloats, lspo slab order = HF state_dict order)
  float32 step losses (nsteps), grad norms (nsteps), params after nsteps AdamW steps (nfloats)
Regenerate: /usr/bin/python3 tests/ref/make_golden.py  (from the repository root).
"""
import json
import math
import os
import struct

import torch

CONFIGS = {
    # name: (vocab, n_positions, n_embd, n_layer, n_head, B, T)
    "small": (64, 16, 16, 2, 2, 2, 8),
    "odd": (67, 13, 24, 3, 3, 1, 11),   # odd vocab and sequence, batch 1, 3 heads of 8
    "wide": (96, 32, 32, 2, 4, 2, 24),  # 48 tokens: products are split across CPU workers
}
OPTIM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, clip=1.0)
NSTEPS = 3
MAGIC = 20251125


def param_names(n_layer):
    names = ["wte.weight", "wpe.weight"]
    for l in range(n_layer):
        for s in ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                  "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                  "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"):
            names.append("h.%d.%s" % (l, s))
    return names + ["ln_f.weight", "ln_f.bias"]


def init_params(V, P, C, L, gen):
    """GPT-2 init, with non-trivial layernorm parameters so their gradients are tested."""
    def normal(shape, std):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * std
    p = {"wte.weight": normal((V, C), 0.02), "wpe.weight": normal((P, C), 0.01)}
    proj_std = 0.02 / math.sqrt(2 * L)
    for l in range(L):
        h = "h.%d." % l
        p[h + "ln_1.weight"] = 1 + normal((C,), 0.1)
        p[h + "ln_1.bias"] = normal((C,), 0.1)
        p[h + "attn.c_attn.weight"] = normal((C, 3 * C), 0.2)
        p[h + "attn.c_attn.bias"] = normal((3 * C,), 0.02)
        p[h + "attn.c_proj.weight"] = normal((C, C), proj_std)
        p[h + "attn.c_proj.bias"] = normal((C,), 0.02)
        p[h + "ln_2.weight"] = 1 + normal((C,), 0.1)
        p[h + "ln_2.bias"] = normal((C,), 0.1)
        p[h + "mlp.c_fc.weight"] = normal((C, 4 * C), 0.2)
        p[h + "mlp.c_fc.bias"] = normal((4 * C,), 0.02)
        p[h + "mlp.c_proj.weight"] = normal((4 * C, C), proj_std)
        p[h + "mlp.c_proj.bias"] = normal((C,), 0.02)
    p["ln_f.weight"] = 1 + normal((C,), 0.1)
    p["ln_f.bias"] = normal((C,), 0.1)
    # Round to float32 first: lspo reads these float32 values from the safetensors.
    return {k: v.float().double() for k, v in p.items()}


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(p, idx, L, NH):
    B, T = idx.shape
    C = p["wte.weight"].shape[1]
    hs = C // NH
    x = p["wte.weight"][idx] + p["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    ln = lambda x, w, b: torch.nn.functional.layer_norm(x, (C,), w, b, 1e-5)
    for l in range(L):
        h = "h.%d." % l
        qkv = ln(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"]) @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        m = ln(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"]) @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"]
        x = x + gelu_new(m) @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = ln(x, p["ln_f.weight"], p["ln_f.bias"])
    return x @ p["wte.weight"].t()


def write_safetensors(path, names, p):
    header, blobs, offset = {}, [], 0
    for n in names:
        data = p[n].float().contiguous().numpy().tobytes()
        header[n] = {"dtype": "F32", "shape": list(p[n].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def floats(t):
    return struct.pack("<%df" % t.numel(), *t.detach().reshape(-1).float().tolist())


def make(name, V, P, C, L, NH, B, T, outdir):
    gen = torch.Generator().manual_seed(1234 + V)
    names = param_names(L)
    p = init_params(V, P, C, L, gen)
    idx = torch.randint(0, V, (B, T + 1), generator=gen)
    inputs, targets = idx[:, :T], idx[:, 1:]
    os.makedirs(outdir, exist_ok=True)
    write_safetensors(os.path.join(outdir, "model.safetensors"), names, p)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": V,
                   "n_positions": P, "n_ctx": P, "n_embd": C, "n_layer": L, "n_head": NH,
                   "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}, f, indent=2)

    params = [p[n].clone().requires_grad_(True) for n in names]
    pd = dict(zip(names, params))
    logits = forward(pd, inputs, L, NH)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    grads = torch.cat([q.grad.reshape(-1) for q in params])
    out_loss, out_logits = loss.item(), logits.reshape(-1, V).detach()

    decay = [q for q in params if q.dim() == 2]
    no_decay = [q for q in params if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPTIM["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=OPTIM["lr"],
                            betas=(OPTIM["beta1"], OPTIM["beta2"]), eps=OPTIM["eps"])
    step_losses, norms = [], []
    for _ in range(NSTEPS):
        opt.zero_grad()
        l = torch.nn.functional.cross_entropy(forward(pd, inputs, L, NH).reshape(-1, V), targets.reshape(-1))
        l.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(params, OPTIM["clip"]).item())
        step_losses.append(l.item())
        opt.step()
    final = torch.cat([q.detach().reshape(-1) for q in params])

    with open(os.path.join(outdir, "golden.bin"), "wb") as f:
        f.write(struct.pack("<11i", MAGIC, 1, V, P, C, L, NH, B, T, grads.numel(), NSTEPS))
        f.write(struct.pack("<6f", *[OPTIM[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "clip")]))
        f.write(struct.pack("<%di" % (B * T), *inputs.reshape(-1).tolist()))
        f.write(struct.pack("<%di" % (B * T), *targets.reshape(-1).tolist()))
        f.write(struct.pack("<f", out_loss) + floats(out_logits) + floats(grads))
        f.write(struct.pack("<%df" % NSTEPS, *step_losses) + struct.pack("<%df" % NSTEPS, *norms))
        f.write(floats(final))
    print("%s: loss %.6f, grad norm %.6f, step losses %s" % (name, out_loss, norms[0],
          " ".join("%.6f" % x for x in step_losses)))


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    here = os.path.dirname(os.path.abspath(__file__))
    for name, cfg in CONFIGS.items():
        make(name, *cfg, os.path.join(here, name))
