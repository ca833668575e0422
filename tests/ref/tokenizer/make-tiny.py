#!/usr/bin/env python3
"""make-tiny.py OUTDIR - writes a small GPT-2-style byte-level BPE tokenizer
(tokenizer.json + tokenizer_config.json) for tests that must run without npm:
256 byte tokens, merges learnt greedily (most frequent pair first, ties by
the pair's text) on a fixed English text, and <|endoftext|> as BOS and EOS.
Deterministic: the committed tests/ref/tokenizer/tiny/ is its output."""
import json, os, re, sys

def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

TEXT = ("the cat sat on the mat. the dog ate the bone; then the cat and the dog slept. "
        "it is what it is, and that is that. they're here, we've seen it, I'll go. "
        "1234 5678 90 data tokens tokenizer training testing the the the ") * 3
B2U = bytes_to_unicode()
pat = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")
words = [[B2U[b] for b in w.encode()] for w in pat.findall(TEXT)]
vocab = {B2U[b]: i for i, b in enumerate(range(256))}
merges = []
for _ in range(120):
    counts = {}
    for w in words:
        for a, b in zip(w, w[1:]):
            counts[(a, b)] = counts.get((a, b), 0) + 1
    if not counts:
        break
    best = min(counts, key=lambda p: (-counts[p], p))
    if counts[best] < 2:
        break
    merges.append(best)
    vocab[best[0] + best[1]] = len(vocab)
    for w in words:
        i = 0
        while i < len(w) - 1:
            if (w[i], w[i + 1]) == best:
                w[i:i + 2] = [best[0] + best[1]]
            i += 1
eot = len(vocab)
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
tok = {"version": "1.0", "truncation": None, "padding": None,
       "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False,
                         "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
       "normalizer": None, "pre_tokenizer": bl, "post_processor": bl, "decoder": bl,
       "model": {"type": "BPE", "dropout": None, "unk_token": None,
                 "continuing_subword_prefix": None, "end_of_word_suffix": None,
                 "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                 "vocab": vocab, "merges": [a + " " + b for a, b in merges]}}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
    json.dump(tok, f, ensure_ascii=False, indent=1)
with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
    json.dump({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, f, indent=1)
