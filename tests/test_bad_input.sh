#!/bin/sh
# test_bad_input.sh - `lspo` on malformed configs, checkpoints and token
# shards (crafted by tests/craft_inputs.py): each run must fail with exit
# code 1 (not a crash), and stderr must name the file and the field.  Usage
# errors must exit 2; the good paths must work and be deterministic.
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/bad_input"
rm -rf "$out"; mkdir -p "$out"
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }
fail=0

# expect CODE FILE FIELD -- lspo ARGS...: exit code CODE, stderr naming FILE and FIELD
expect() {
  code=$1 file=$2 field=$3; shift 4
  "$lspo" "$@" > "$out/stdout" 2> "$out/stderr"; rc=$?
  if [ "$rc" -ne "$code" ]; then
    echo "FAIL: lspo $*: exit code $rc, expected $code"; cat "$out/stderr"; fail=1; return
  fi
  for s in "$file" "$field"; do
    if ! grep -qF -- "$s" "$out/stderr"; then
      echo "FAIL: lspo $*: stderr does not name '$s':"; cat "$out/stderr"; fail=1; return
    fi
  done
  echo "ok: lspo $* -> $rc ($(grep -m1 'error' "$out/stderr" | sed 's/^lspo: [a-z_0-9.]*:[0-9]*: //'))"
}

# --- good paths --------------------------------------------------------------
sizes="--vocab 256 --n-positions 32 --n-embd 32 --n-layer 2 --n-head 4"
"$lspo" init $sizes --seed 3 --out "$out/good" > /dev/null || { echo "FAIL: init"; exit 1; }
"$lspo" init $sizes --seed 3 --out "$out/good2" > /dev/null || { echo "FAIL: init 2"; exit 1; }
cmp -s "$out/good/model.safetensors" "$out/good2/model.safetensors" \
  || { echo "FAIL: init is not deterministic for a seed"; fail=1; }
"$lspo" init --config-json "$out/good/config.json" --seed 4 --out "$out/good3" > /dev/null \
  || { echo "FAIL: init --config-json"; fail=1; }
cmp -s "$out/good/model.safetensors" "$out/good3/model.safetensors" \
  && { echo "FAIL: seeds 3 and 4 gave the same checkpoint"; fail=1; }
printf 'To be, or not to be, that is the question.\n' > "$out/text.txt"
"$lspo" tokenize --bytes "$out/text.txt" "$out/text.bin" > /dev/null || { echo "FAIL: tokenize"; fail=1; }
[ "$(wc -c < "$out/text.bin")" -eq $((1024 + 2 * 43)) ] || { echo "FAIL: shard size"; fail=1; }
"$lspo" check --ckpt "$out/good" "$out/text.bin" > "$out/check.log" \
  || { echo "FAIL: check of good inputs"; cat "$out/check.log"; fail=1; }
grep -q 'text.bin: 43 tokens' "$out/check.log" || { echo "FAIL: check output"; fail=1; }

python3 "$LSPO_SRCDIR/tests/craft_inputs.py" "$out/good" "$out" || { echo "FAIL: craft_inputs.py"; exit 1; }

# --- configs -------------------------------------------------------------------
expect 1 cfg_missing/config.json n_head -- init --config-json "$out/cfg_missing/config.json" --out "$out/x"
expect 1 cfg_nonint/config.json n_embd -- init --config-json "$out/cfg_nonint/config.json" --out "$out/x"
expect 1 cfg_badjson/config.json JSON -- init --config-json "$out/cfg_badjson/config.json" --out "$out/x"
expect 1 nonexistent/config.json "cannot read" -- init --config-json "$out/nonexistent/config.json" --out "$out/x"
expect 1 cfg_missing/config.json n_head -- check --ckpt "$out/cfg_missing"

# --- checkpoints ---------------------------------------------------------------
expect 1 st_truncated/model.safetensors ln_f.bias -- check --ckpt "$out/st_truncated"
expect 1 st_hlen/model.safetensors "header length" -- check --ckpt "$out/st_hlen"
expect 1 st_badjson/model.safetensors JSON -- check --ckpt "$out/st_badjson"
expect 1 st_range/model.safetensors "'ln_f.bias': data_offsets" -- check --ckpt "$out/st_range"
expect 1 st_dtype/model.safetensors "'wte.weight': dtype I32" -- check --ckpt "$out/st_dtype"
expect 1 st_missing/model.safetensors "missing tensor 'h.1.ln_2.bias'" -- check --ckpt "$out/st_missing"
expect 1 st_extra/model.safetensors "unknown tensor 'transformer.foo.weight'" -- check --ckpt "$out/st_extra"
expect 1 st_shape/model.safetensors "'h.0.mlp.c_fc.weight' has shape" -- check --ckpt "$out/st_shape"
expect 1 st_lmhead/model.safetensors "'lm_head.weight' differs" -- check --ckpt "$out/st_lmhead"
expect 1 st_disagree/model.safetensors "'n_layer' = 1" -- check --ckpt "$out/st_disagree"
expect 1 st_nofile/model.safetensors "cannot open" -- check --ckpt "$out/st_nofile"

# --- token shards --------------------------------------------------------------
expect 1 empty.bin "'ntokens'" -- check "$out/empty.bin"
expect 1 truncated.bin "truncated" -- check "$out/truncated.bin"
expect 1 magic.bin "'magic'" -- check "$out/magic.bin"
expect 1 vocab.bin "vocab_size 256" -- check --vocab 256 "$out/vocab.bin"
expect 1 vocab.bin "position 2" -- check --ckpt "$out/good" "$out/vocab.bin"
expect 1 nonexistent.bin "cannot open" -- check "$out/nonexistent.bin"
expect 1 nonexistent.txt "cannot open" -- tokenize --bytes "$out/nonexistent.txt" "$out/x.bin"

# --- usage errors: exit 2 -------------------------------------------------------
expect 2 "--vocab" "integer" -- init --vocab abc --out "$out/x"
expect 2 "--n-head" "required" -- init --vocab 5 --n-positions 4 --n-embd 4 --n-layer 1 --out "$out/x"
expect 2 "--n-head" "divisible" -- init --vocab 5 --n-positions 4 --n-embd 4 --n-layer 1 --n-head 3 --out "$out/x"
expect 2 "--config-json" "exclusive" -- init --config-json "$out/good/config.json" --vocab 5 --out "$out/x"
expect 2 "--family" "mistral" -- init --family mistral $sizes --out "$out/x"
expect 2 "--intermediate" "required for llama" -- init --family llama $sizes --out "$out/x"
expect 2 "--n-kv-head" "llama and qwen2" -- init $sizes --n-kv-head 2 --out "$out/x"
expect 2 "num_key_value_heads (3)" "llama model" -- init --family llama $sizes --intermediate 48 --n-kv-head 3 --out "$out/x"
expect 2 "--out" "required" -- init $sizes
expect 2 "init" "unknown" -- init --bogus
expect 2 "--bytes" "tokeniser" -- tokenize "$out/text.txt" "$out/x.bin"
expect 2 "tokenize" "two arguments" -- tokenize --bytes "$out/text.txt"
expect 2 "check" "nothing to check" -- check
# --- training states (--resume) -------------------------------------------------
for i in 1 2 3 4 5 6 7 8; do cat "$out/text.txt"; done > "$out/long.txt"
"$lspo" tokenize --bytes "$out/long.txt" "$out/long.bin" > /dev/null || { echo "FAIL: tokenize long"; fail=1; }
expect 2 "--lsp-targets" "unknown target 'q' for gpt2" -- train --model "$out/good" --data "$out/long.bin" --batch 2 --seq 16 --mode lsp --lsp-targets q
expect 2 "--rank-timeout" "got '-3'" -- train --model "$out/good" --data "$out/long.bin" --batch 2 --seq 16 --rank-timeout -3
expect 2 "--rank-timeout" "got 'abc'" -- train --model "$out/good" --data "$out/long.bin" --batch 2 --seq 16 --rank-timeout abc
lsp="--data $out/long.bin --batch 2 --seq 16 --mode lsp --lsp-d 16 --lsp-r 4"
"$lspo" train --model "$out/good" $lsp --steps 2 --save "$out/run" > /dev/null 2>&1 || { echo "FAIL: train --save"; fail=1; }
# the manifest names the option that differs from the saved run's
expect 2 "--mode" "zero" -- train --resume "$out/run" --data "$out/long.bin" --batch 2 --seq 16 --steps 3 --mode zero
expect 2 "--lsp-d" "16 there, 8 now" -- train --resume "$out/run" $lsp --lsp-d 8 --steps 3
# without a manifest (a checkpoint saved before manifests) the state's own checks refuse
mkdir -p "$out/flat" && cp "$out/run/latest/"* "$out/flat/" && rm "$out/flat/manifest.json"
expect 1 flat/train_state.safetensors "tensor 'mode'" -- train --resume "$out/flat" --data "$out/long.bin" --batch 2 --seq 16 --steps 3 --mode zero
expect 1 flat/train_state.safetensors "'lsp.0.M'" -- train --resume "$out/flat" $lsp --lsp-d 8 --steps 3
expect 1 good/train_state.safetensors "cannot" -- train --resume "$out/good" $lsp --steps 3
expect 2 "--resume" "--model" -- train --resume "$out/run" --model "$out/good" $lsp --steps 3
# An index out of range, and indices not increasing along a row.
python3 - "$out/run" <<'PY' || { echo "FAIL: crafting bad states"; fail=1; }
import json, os, shutil, struct, sys
run = sys.argv[1]
for name, value in (("state_range", 16), ("state_order", None)):
    dst = os.path.join(os.path.dirname(run), name)
    shutil.copytree(run, dst, dirs_exist_ok=True)
    path = os.path.join(dst, "train_state.safetensors")
    data = bytearray(open(path, "rb").read())
    hlen = struct.unpack("<Q", data[:8])[0]
    begin = 8 + hlen + json.loads(data[8:8 + hlen])["proj.1.Q.idx"]["data_offsets"][0]
    first = struct.unpack("<i", data[begin:begin + 4])[0]
    if value is None:   # the second index of the row equal to the first
        data[begin + 4:begin + 8] = struct.pack("<i", first)
    else:
        data[begin:begin + 4] = struct.pack("<i", value)
    open(path, "wb").write(data)
PY
expect 1 state_range/train_state.safetensors "'proj.1.Q.idx': element 0 = 16" -- train --resume "$out/state_range" $lsp --steps 3
expect 1 state_order/train_state.safetensors "'proj.1.Q.idx': element 1" -- train --resume "$out/state_order" $lsp --steps 3
for c in init tokenize check; do
  "$lspo" $c --help > "$out/help" || { echo "FAIL: $c --help"; fail=1; }
done
[ -e "$out/x" ] && { echo "FAIL: a failed init left $out/x"; fail=1; }
[ "$fail" -eq 0 ] && echo "all bad inputs rejected with the file and field named"
exit "$fail"
