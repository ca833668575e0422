#!/usr/bin/python3
"""The PyTorch side of a Llama training-step benchmark: one step (forward, backward,
global-norm clip, AdamW) in float32 on the CPU, same model and sizes as lspo (HF Llama in
plain torch, as tests/ref/make_golden_llama.py: RMSNorm, RoPE theta 1e4, grouped K/V heads,
SwiGLU, untied head), same threads. head_dim = HIDDEN / N_HEAD.

usage: llama_step_torch.py VOCAB HIDDEN N_LAYER N_HEAD N_KV_HEAD INTERMEDIATE B T STEPS THREADS
Prints: torch <median step ms> <tokens/s>
"""
import math
import statistics
import sys
import time

import torch

V, C, L, NH, NKV, I, B, T, STEPS, THREADS = (int(a) for a in sys.argv[1:11])
torch.set_num_threads(THREADS)
torch.manual_seed(0)
HD, EPS = C // NH, 1e-5


def param(*shape, std=0.02):
    return (torch.randn(*shape) * std).requires_grad_(True)


p = {"embed": param(V, C), "norm": torch.ones(C, requires_grad=True), "head": param(V, C)}
for l in range(L):
    p.update({f"{l}.q": param(NH * HD, C), f"{l}.k": param(NKV * HD, C), f"{l}.v": param(NKV * HD, C),
              f"{l}.o": param(C, NH * HD), f"{l}.gate": param(I, C), f"{l}.up": param(I, C),
              f"{l}.down": param(C, I), f"{l}.ln1": torch.ones(C, requires_grad=True),
              f"{l}.ln2": torch.ones(C, requires_grad=True)})
ang = torch.arange(T)[:, None] * (1.0 / 10000.0 ** (torch.arange(0, HD, 2) / HD))[None, :]
cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()
mask = torch.tril(torch.ones(T, T, dtype=torch.bool))


def rmsnorm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rope(x):
    return x * cos + torch.cat((-x[..., HD // 2:], x[..., :HD // 2]), -1) * sin


def forward(idx):
    x = p["embed"][idx]
    for l in range(L):
        h = rmsnorm(x, p[f"{l}.ln1"])
        q = rope((h @ p[f"{l}.q"].t()).view(B, T, NH, HD).transpose(1, 2))
        k = rope((h @ p[f"{l}.k"].t()).view(B, T, NKV, HD).transpose(1, 2)).repeat_interleave(NH // NKV, 1)
        v = (h @ p[f"{l}.v"].t()).view(B, T, NKV, HD).transpose(1, 2).repeat_interleave(NH // NKV, 1)
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(HD)).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, T, NH * HD) @ p[f"{l}.o"].t()
        h = rmsnorm(x, p[f"{l}.ln2"])
        x = x + (torch.nn.functional.silu(h @ p[f"{l}.gate"].t()) * (h @ p[f"{l}.up"].t())) @ p[f"{l}.down"].t()
    return rmsnorm(x, p["norm"]) @ p["head"].t()


opt = torch.optim.AdamW(list(p.values()), lr=3e-4, weight_decay=0.0)
times = []
for s in range(STEPS + 2):
    idx = torch.randint(0, V, (B, T + 1))
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(forward(idx[:, :T]).reshape(-1, V), idx[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0)
    opt.step()
    times.append(time.perf_counter() - t0)
ms = statistics.median(times[2:]) * 1e3
print("torch %.1f %.0f" % (ms, B * T / ms * 1e3))
