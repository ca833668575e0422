#!/usr/bin/env python3
"""craft_inputs.py GOOD_CKPT OUT - malformed checkpoints, configs and token
shards for tests/test_bad_input.sh (standard library only).

GOOD_CKPT is a checkpoint written by `lspo init` (n_layer 2, n_embd 32);
each case is written under OUT/<case>/.  Prints nothing; the shell test
knows the case names."""
import json
import os
import shutil
import struct
import sys

good, out = sys.argv[1], sys.argv[2]
with open(os.path.join(good, "model.safetensors"), "rb") as f:
    raw = f.read()
(hlen,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + hlen])
data = raw[8 + hlen:]
meta = header.pop("__metadata__", None)
tensors = {k: (v, data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}
with open(os.path.join(good, "config.json")) as f:
    config = json.load(f)


def case(name, config_obj=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        if isinstance(config_obj, str):
            f.write(config_obj)
        else:
            json.dump(config if config_obj is None else config_obj, f)
    return d


def write_model(d, items, hdr_edit=None):
    """items: list of (name, dtype, shape, bytes), packed in order."""
    hdr, blob, off = {}, b"", 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape, buf in items:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(buf)]}
        blob += buf
        off += len(buf)
    if hdr_edit:
        hdr_edit(hdr)
    text = json.dumps(hdr).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob)


def items():
    return [(k, v["dtype"], list(v["shape"]), b) for k, (v, b) in tensors.items()]


# --- config.json ------------------------------------------------------------
c = dict(config); del c["n_head"]
case("cfg_missing", c)
c = dict(config); c["n_embd"] = "32"
case("cfg_nonint", c)
case("cfg_badjson", '{"vocab_size": 256, "n_embd": ')

# --- model.safetensors --------------------------------------------------------
d = case("st_truncated")
write_model(d, items())
p = os.path.join(d, "model.safetensors")
with open(p, "rb") as f:
    b = f.read()
with open(p, "wb") as f:
    f.write(b[:-100])

d = case("st_hlen")
with open(os.path.join(d, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", 1 << 40) + b"{}")

d = case("st_badjson")
with open(os.path.join(d, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", 16) + b'{"wte.weight": [')

d = case("st_range")
write_model(d, items(), lambda h: h["ln_f.bias"].update(data_offsets=[h["ln_f.bias"]["data_offsets"][0], 10**9]))

d = case("st_dtype")
write_model(d, [(n, "I32" if n == "wte.weight" else t, s, b) for n, t, s, b in items()])

d = case("st_missing")
write_model(d, [it for it in items() if it[0] != "h.1.ln_2.bias"])

d = case("st_extra")
write_model(d, items() + [("transformer.foo.weight", "F32", [2], b"\0" * 8)])

d = case("st_shape")
write_model(d, [(n, t, s[::-1] if n == "h.0.mlp.c_fc.weight" else s, b) for n, t, s, b in items()])

d = case("st_lmhead")
wte = bytearray(tensors["wte.weight"][1])
wte[40:44] = struct.pack("<f", 1.5)
write_model(d, items() + [("lm_head.weight", "F32", tensors["wte.weight"][0]["shape"], bytes(wte))])

c = dict(config); c["n_layer"] = 1
d = case("st_disagree", c)
write_model(d, items())

case("st_nofile")  # config.json only

# --- token shards -------------------------------------------------------------
def shard(name, magic, version, count, tokens):
    with open(os.path.join(out, name), "wb") as f:
        f.write(struct.pack("<256i", magic, version, count, *([0] * 253)))
        f.write(struct.pack("<%dH" % len(tokens), *tokens))


shard("empty.bin", 20240520, 1, 0, [])
shard("truncated.bin", 20240520, 1, 100, list(range(50)))
shard("magic.bin", 20240326, 1, 4, [1, 2, 3, 4])
shard("vocab.bin", 20240520, 1, 4, [1, 2, 300, 4])
