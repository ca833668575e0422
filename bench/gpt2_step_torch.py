#!/usr/bin/python3
"""The PyTorch side of bench/bench-step: one GPT-2 training step (forward,
backward, global-norm clip, AdamW) in float32 on the CPU, same model and sizes
as lspo (HF GPT-2 in plain torch, as tests/ref/make_golden.py), same threads.

usage: gpt2_step_torch.py VOCAB N_POS N_EMBD N_LAYER N_HEAD B T STEPS THREADS
Prints: torch <median step ms> <tokens/s>
"""
import math
import statistics
import sys
import time

import torch

V, P, C, L, NH, B, T, STEPS, THREADS = (int(a) for a in sys.argv[1:10])
torch.set_num_threads(THREADS)
torch.manual_seed(0)


def param(*shape, std=0.02):
    return (torch.randn(*shape) * std).requires_grad_(True)


p = {"wte": param(V, C), "wpe": param(P, C, std=0.01)}
for l in range(L):
    p.update({f"{l}.ln1w": torch.ones(C, requires_grad=True), f"{l}.ln1b": torch.zeros(C, requires_grad=True),
              f"{l}.qkvw": param(C, 3 * C), f"{l}.qkvb": torch.zeros(3 * C, requires_grad=True),
              f"{l}.projw": param(C, C), f"{l}.projb": torch.zeros(C, requires_grad=True),
              f"{l}.ln2w": torch.ones(C, requires_grad=True), f"{l}.ln2b": torch.zeros(C, requires_grad=True),
              f"{l}.fcw": param(C, 4 * C), f"{l}.fcb": torch.zeros(4 * C, requires_grad=True),
              f"{l}.fcpw": param(4 * C, C), f"{l}.fcpb": torch.zeros(C, requires_grad=True)})
p["lnfw"] = torch.ones(C, requires_grad=True)
p["lnfb"] = torch.zeros(C, requires_grad=True)
hs = C // NH
mask = torch.tril(torch.ones(T, T, dtype=torch.bool))


def forward(idx):
    x = p["wte"][idx] + p["wpe"][:T]
    ln = lambda x, w, b: torch.nn.functional.layer_norm(x, (C,), w, b, 1e-5)
    for l in range(L):
        q, k, v = (ln(x, p[f"{l}.ln1w"], p[f"{l}.ln1b"]) @ p[f"{l}.qkvw"] + p[f"{l}.qkvb"]).split(C, dim=2)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(hs)).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, T, C) @ p[f"{l}.projw"] + p[f"{l}.projb"]
        h = ln(x, p[f"{l}.ln2w"], p[f"{l}.ln2b"]) @ p[f"{l}.fcw"] + p[f"{l}.fcb"]
        x = x + torch.nn.functional.gelu(h, approximate="tanh") @ p[f"{l}.fcpw"] + p[f"{l}.fcpb"]
    return ln(x, p["lnfw"], p["lnfb"]) @ p["wte"].t()


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
