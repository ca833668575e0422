#!/usr/bin/python3
"""Golden data for lspo's Llama and Qwen2 models, from PyTorch (Debian's python3-torch 1.13).

For each config below this script writes, under tests/ref/<name>/:
  config.json         an HF LlamaConfig / Qwen2Config (the fields lspo reads, as HF writes them)
  model.safetensors   the seeded random initial parameters, F32, HF names and HF state_dict order,
                      nn.Linear (out, in) weights; no lm_head.weight when tie_word_embeddings
  grads.safetensors   F32 gradient of the mean cross-entropy loss at those parameters, same names
  final.safetensors   F32 parameters after NSTEPS AdamW steps with global-norm clipping, same names
  golden.bin          inputs, targets and the reference results (format below)
The model is HF transformers' LlamaForCausalLM / Qwen2ForCausalLM written out in plain torch and
run in float64 throughout (HF itself computes RoPE angles and the attention softmax in float32;
this reference does not, so it carries no float32 rounding of its own):
  x = embed_tokens[ids]; per layer
    h = rmsnorm(x, input_layernorm); q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
    q, k = rope(q), rope(k)     HF rotate_half convention, positions 0..T-1 of each sequence,
                                inv_freq = theta^(-2i/head_dim), llama3 rope_scaling as HF's
                                _compute_llama3_parameters (low / medium / high frequency bands)
    y = causal softmax(q k^T / sqrt(head_dim)) v, query head j reading K/V head j / (nh / nkv)
    x = x + y Wo^T; h = rmsnorm(x, post_attention_layernorm)
    x = x + (silu(h Wgate^T) * (h Wup^T)) Wdown^T
  logits = rmsnorm(x, model.norm) lm_head^T (embed_tokens^T when tied); loss = mean cross-entropy
  rmsnorm(x, w) = x / sqrt(mean(x^2) + rms_norm_eps) * w
The optimizer is make_golden.py's: torch.optim.AdamW, weight decay on the 2-D tensors only (the
embedding and lm_head included), clip_grad_norm_ to `clip` before each step, the loss and
the norm (before clipping) recorded per step, all steps on the same batch.

golden.bin, little endian:
  int32 magic 20261130, version 2, B, T, vocab, nsteps
  float32 lr, beta1, beta2, eps, weight_decay, clip
  int32 inputs (B*T), targets (B*T)                        row-major (B, T)
  float32 loss, logits (B*T, vocab), step losses (nsteps), grad norms (nsteps, before clipping)
The script checks itself before writing: the loss at init is within 0.05 of log(vocab), the
autograd gradient of every tensor matches a central finite difference at two entries, and the
llama3 configuration exercises all three frequency bands.
Regenerate: /usr/bin/python3 tests/ref/make_golden_llama.py  (from the repository root).
"""
import json
import math
import os
import struct

import torch

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 128}
CONFIGS = {
    # GQA (2 query heads per K/V head), untied head, intermediate not a multiple of hidden, llama3
    # scaling: with theta 1e4 and head_dim 8 the wavelengths 2 pi * 10^(0, 1, 2, 3) fall in the
    # high (< 128/4), medium and low (> 128/1) frequency bands.
    "llama_gqa": dict(family="llama", V=70, C=32, L=2, NH=4, NKV=2, HD=8, I=56, theta=10000.0,
                      scaling=LLAMA3_SCALING, max_pos=1024, eps=1e-5, tied=False, B=2, T=11, seed=11),
    # Qwen2: q/k/v biases, no o_proj bias, tied embeddings, 4 query heads on 1 K/V head.
    "qwen2_tied": dict(family="qwen2", V=80, C=32, L=2, NH=4, NKV=1, HD=8, I=72, theta=1000000.0,
                       scaling=None, max_pos=256, eps=1e-6, tied=True, B=2, T=9, seed=22),
    # plain multi-head Llama with head_dim 16 != hidden / heads = 8, 3 layers, batch 1.
    "llama_mha": dict(family="llama", V=61, C=24, L=3, NH=3, NKV=3, HD=16, I=40, theta=10000.0,
                      scaling=None, max_pos=64, eps=1e-5, tied=False, B=1, T=13, seed=33),
}
OPTIM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, clip=1.0)
NSTEPS = 4
MAGIC = 20261130
VERSION = 2


def param_shapes(c):
    """HF parameter names and shapes, in HF state_dict order."""
    C, I, qd, kvd = c["C"], c["I"], c["NH"] * c["HD"], c["NKV"] * c["HD"]
    bias = c["family"] == "qwen2"
    s = {"model.embed_tokens.weight": (c["V"], C)}
    for l in range(c["L"]):
        a = "model.layers.%d.self_attn." % l
        s[a + "q_proj.weight"] = (qd, C)
        if bias:
            s[a + "q_proj.bias"] = (qd,)
        s[a + "k_proj.weight"] = (kvd, C)
        if bias:
            s[a + "k_proj.bias"] = (kvd,)
        s[a + "v_proj.weight"] = (kvd, C)
        if bias:
            s[a + "v_proj.bias"] = (kvd,)
        s[a + "o_proj.weight"] = (C, qd)
        m = "model.layers.%d." % l
        s[m + "mlp.gate_proj.weight"] = (I, C)
        s[m + "mlp.up_proj.weight"] = (I, C)
        s[m + "mlp.down_proj.weight"] = (C, I)
        s[m + "input_layernorm.weight"] = (C,)
        s[m + "post_attention_layernorm.weight"] = (C,)
    s["model.norm.weight"] = (C,)
    if not c["tied"]:
        s["lm_head.weight"] = (c["V"], C)
    return s


def init_params(c, gen):
    """Llama-like init, larger on q/k/v/gate/up so attention and SwiGLU are not near-linear,
    norm weights 1 + N(0, 0.1) and biases N(0, 0.1) so their gradients are tested."""
    out_std = 0.02 / math.sqrt(2 * c["L"])
    p = {}
    for n, shape in param_shapes(c).items():
        if n.endswith("norm.weight"):
            t = 1 + torch.randn(*shape, generator=gen) * 0.1
        elif n.endswith(".bias"):
            t = torch.randn(*shape, generator=gen) * 0.1
        elif n.endswith(("o_proj.weight", "down_proj.weight")):
            t = torch.randn(*shape, generator=gen) * out_std
        elif n.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "gate_proj.weight",
                         "up_proj.weight")):
            t = torch.randn(*shape, generator=gen) * 0.2
        else:  # embed_tokens, lm_head
            t = torch.randn(*shape, generator=gen) * 0.02
        # Round to float32 first: lspo reads these float32 values from the safetensors.
        p[n] = t.float().double()
    return p


def rope_inv_freq(c):
    """inv_freq as HF's _compute_default_rope_parameters / _compute_llama3_parameters, in float64.
    Also returns the band of each frequency (h, m, l) for the self-check."""
    hd = c["HD"]
    inv = 1.0 / c["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    sc = c["scaling"]
    if sc is None:
        return inv, None
    factor, lo, hi = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
    old = sc["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    low_wavelen, high_wavelen = old / lo, old / hi
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    bands = "".join("h" if w < high_wavelen else "l" if w > low_wavelen else "m" for w in wavelen.tolist())
    return torch.where(medium, smoothed, scaled), bands


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(p, idx, c):
    B, T = idx.shape
    NH, NKV, HD, eps = c["NH"], c["NKV"], c["HD"], c["eps"]
    inv, _ = rope_inv_freq(c)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat((ang, ang), dim=-1)
    cos, sin = ang.cos(), ang.sin()                     # (T, HD), broadcast over B and heads
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    x = p["model.embed_tokens.weight"][idx]
    for l in range(c["L"]):
        a = "model.layers.%d.self_attn." % l
        m = "model.layers.%d." % l
        h = rmsnorm(x, p[m + "input_layernorm.weight"], eps)
        proj = lambda w: torch.nn.functional.linear(h, p[a + w + ".weight"], p.get(a + w + ".bias"))
        q = proj("q_proj").view(B, T, NH, HD).transpose(1, 2)
        k = proj("k_proj").view(B, T, NKV, HD).transpose(1, 2)
        v = proj("v_proj").view(B, T, NKV, HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)       # HF repeat_kv: head j reads K/V head j // rep
        v = v.repeat_interleave(NH // NKV, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HD)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, NH * HD)
        x = x + y @ p[a + "o_proj.weight"].t()
        h = rmsnorm(x, p[m + "post_attention_layernorm.weight"], eps)
        g = h @ p[m + "mlp.gate_proj.weight"].t()
        u = h @ p[m + "mlp.up_proj.weight"].t()
        x = x + (torch.nn.functional.silu(g) * u) @ p[m + "mlp.down_proj.weight"].t()
    x = rmsnorm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if c["tied"] else p["lm_head.weight"]
    return x @ head.t()


def loss_of(p, inputs, targets, c):
    logits = forward(p, inputs, c)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, c["V"]), targets.reshape(-1)), logits


def hf_config(c):
    llama = c["family"] == "llama"
    cfg = {"model_type": c["family"], "architectures": ["LlamaForCausalLM" if llama else "Qwen2ForCausalLM"],
           "vocab_size": c["V"], "hidden_size": c["C"], "intermediate_size": c["I"],
           "num_hidden_layers": c["L"], "num_attention_heads": c["NH"], "num_key_value_heads": c["NKV"]}
    if llama:  # LlamaConfig has head_dim; Qwen2Config does not (hidden_size / heads)
        cfg["head_dim"] = c["HD"]
    else:
        assert c["HD"] * c["NH"] == c["C"]
    cfg.update({"hidden_act": "silu", "max_position_embeddings": c["max_pos"], "initializer_range": 0.02,
                "rms_norm_eps": c["eps"], "rope_theta": c["theta"], "rope_scaling": c["scaling"],
                "tie_word_embeddings": c["tied"]})
    if llama:  # Qwen2 has fixed q/k/v biases and no o_proj bias, and no such fields
        cfg.update({"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1})
    else:
        cfg.update({"use_sliding_window": False, "sliding_window": None, "max_window_layers": c["L"]})
    cfg.update({"attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "use_cache": True,
                "torch_dtype": "float32", "transformers_version": "4.46.0"})
    return cfg


def write_safetensors(path, p, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for n, t in p.items():
        data = t.detach().float().contiguous().numpy().tobytes()
        header[n] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def floats(t):
    return struct.pack("<%df" % t.numel(), *t.detach().reshape(-1).float().tolist())


def check_finite_differences(name, p, inputs, targets, c, gen):
    """Autograd against a central difference, at two random entries of every tensor."""
    params = {n: t.clone().requires_grad_(True) for n, t in p.items()}
    loss_of(params, inputs, targets, c)[0].backward()
    h = 1e-6
    worst = 0.0
    for n, t in p.items():
        for i in torch.randint(0, t.numel(), (2,), generator=gen).tolist():
            q = {k: v.clone() for k, v in p.items()}
            q[n].view(-1)[i] += h
            up = loss_of(q, inputs, targets, c)[0].item()
            q[n].view(-1)[i] -= 2 * h
            down = loss_of(q, inputs, targets, c)[0].item()
            fd, ad = (up - down) / (2 * h), params[n].grad.reshape(-1)[i].item()
            assert abs(fd - ad) <= 1e-8 + 1e-5 * abs(ad), "%s: %s[%d]: autograd %.10g, finite difference %.10g" % (
                name, n, i, ad, fd)
            worst = max(worst, abs(fd - ad))
    return worst


def make(name, c, outdir):
    gen = torch.Generator().manual_seed(1000 + c["seed"])
    V, B, T = c["V"], c["B"], c["T"]
    assert c["NH"] % c["NKV"] == 0
    p = init_params(c, gen)
    idx = torch.randint(0, V, (B, T + 1), generator=gen)
    inputs, targets = idx[:, :T], idx[:, 1:]

    _, bands = rope_inv_freq(c)
    if c["scaling"] is not None:
        assert set(bands) == set("hml"), "%s: llama3 frequency bands %s, not all three" % (name, bands)
    fd_worst = check_finite_differences(name, p, inputs, targets, c, gen)

    params = {n: t.clone().requires_grad_(True) for n, t in p.items()}
    loss, logits = loss_of(params, inputs, targets, c)
    assert abs(loss.item() - math.log(V)) < 0.05, "%s: loss at init %.4f, log(vocab) %.4f" % (
        name, loss.item(), math.log(V))
    loss.backward()
    grads = {n: t.grad.clone() for n, t in params.items()}
    out_loss, out_logits = loss.item(), logits.reshape(-1, V).detach()

    plist = list(params.values())
    decay = [q for q in plist if q.dim() == 2]
    no_decay = [q for q in plist if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPTIM["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=OPTIM["lr"],
                            betas=(OPTIM["beta1"], OPTIM["beta2"]), eps=OPTIM["eps"])
    step_losses, norms = [], []
    for _ in range(NSTEPS):
        opt.zero_grad()
        l = loss_of(params, inputs, targets, c)[0]
        l.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(plist, OPTIM["clip"]).item())
        step_losses.append(l.item())
        opt.step()

    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(hf_config(c), f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(outdir, "model.safetensors"), p, {"format": "pt"})
    write_safetensors(os.path.join(outdir, "grads.safetensors"), grads)
    write_safetensors(os.path.join(outdir, "final.safetensors"), params)
    with open(os.path.join(outdir, "golden.bin"), "wb") as f:
        f.write(struct.pack("<6i", MAGIC, VERSION, B, T, V, NSTEPS))
        f.write(struct.pack("<6f", *[OPTIM[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "clip")]))
        f.write(struct.pack("<%di" % (B * T), *inputs.reshape(-1).tolist()))
        f.write(struct.pack("<%di" % (B * T), *targets.reshape(-1).tolist()))
        f.write(struct.pack("<f", out_loss) + floats(out_logits))
        f.write(struct.pack("<%df" % NSTEPS, *step_losses) + struct.pack("<%df" % NSTEPS, *norms))
    print("%s: %d params, loss %.6f (log V %.6f), grad norms %s, step losses %s, rope bands %s, "
          "finite-difference max |diff| %.2e" % (
              name, sum(t.numel() for t in p.values()), out_loss, math.log(V),
              " ".join("%.4f" % x for x in norms), " ".join("%.6f" % x for x in step_losses),
              bands or "-", fd_worst))


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    here = os.path.dirname(os.path.abspath(__file__))
    for name, cfg in CONFIGS.items():
        make(name, cfg, os.path.join(here, name))
