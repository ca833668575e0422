#!/bin/sh
# test_jobs.sh - `lspo train` as a batch job sees it: SIGTERM / SIGUSR1 end a
# run with a checkpoint of the current step and exit 75, the same command
# line resumes it (--resume auto) to the uninterrupted run's weights bit for
# bit with every CSV row once; checkpoints are verified (a damaged or mixed
# one is refused naming the file), a resume with other options is refused
# naming the option, saves are locked, --keep prunes, temporary files of
# killed saves go; non-finite values never reach a checkpoint; every output
# is checked before training and never overwrites an input.
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/jobs"
rm -rf "$out"; mkdir -p "$out"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; fi; }
# expect CODE 'WORDS' CMD...: exit code CODE and stderr holding each word
expect() {
  want=$1; words=$2; shift 2
  "$@" > "$out/x.out" 2> "$out/x.err"; rc=$?
  if [ $rc -ne "$want" ]; then echo "FAILED: '$*' exited $rc, expected $want"; cat "$out/x.err"; fail=1; return; fi
  for w in $words; do
    grep -qF -- "$w" "$out/x.err" || { echo "FAILED: '$*': stderr lacks '$w'"; cat "$out/x.err"; fail=1; }
  done
}

i=0; while [ $i -lt 60 ]; do
  echo "Jobs end at their wall-time limit; a checkpoint makes the next job continue." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
"$lspo" init --vocab 256 --n-positions 16 --n-embd 16 --n-layer 1 --n-head 2 --seed 3 --out "$out/init" > /dev/null \
  || { echo "init failed"; exit 1; }
cp "$out/tok.bin" "$out/tok.orig"

# --- signals: exit 75, checkpoint of the current step, resume equals -------
steps=400
for case in "TERM native" "USR1 lsp --lsp-d 8 --lsp-r 2 --check-freq 50" "USR2 zero"; do
  sig=${case%% *}; mode=${case#* }
  common="--model $out/init --data $out/tok.bin --steps $steps --batch 2 --seq 8 --lr 1e-3 --warmup 20 --lr-decay cosine --seed 5 --mode $mode"
  rm -rf "$out/ref" "$out/run" "$out/ref.csv" "$out/run.csv"
  # shellcheck disable=SC2086
  "$lspo" train $common --save "$out/ref" --log "$out/ref.csv" > "$out/ref.out" 2>&1 || { echo "FAILED: reference run ($mode)"; fail=1; }
  # shellcheck disable=SC2086
  "$lspo" train $common --save "$out/run" --resume auto --log "$out/run.csv" > "$out/run1.out" 2>&1 &
  pid=$!
  n=0; while [ "$(cat "$out/run.csv" 2>/dev/null | wc -l)" -lt 4 ] && [ $n -lt 600 ]; do sleep 0.02; n=$((n + 1)); done
  kill -"$sig" $pid
  wait $pid; rc=$?
  check "SIG$sig: exit 75 ($mode)" "[ $rc -eq 75 ]"
  last=$(sed -n 's/^step *\([0-9]*\) .*/\1/p' "$out/run1.out" | tail -n 1)
  check "SIG$sig: a checkpoint of the last step ($mode)" "[ -n '$last' ] && [ \"\$(readlink '$out/run/latest')\" = \"step-\$(printf %08d '$last')\" ]"
  check "SIG$sig: the message names the signal and the checkpoint ($mode)" "grep -q 'SIG$sig: stopped after step $last; checkpoint .*step-' '$out/run1.out'"
  check "SIG$sig: not at the end yet ($mode)" "[ '$last' -lt $steps ]"
  # shellcheck disable=SC2086
  "$lspo" train $common --save "$out/run" --resume auto --log "$out/run.csv" > "$out/run2.out" 2>&1
  check "SIG$sig: the same command line resumes ($mode)" "[ $? -eq 0 ] && grep -q 'resumed from .* at step $last' '$out/run2.out'"
  check "SIG$sig: same weights and state as uninterrupted ($mode)" "cmp -s '$out/ref/model.safetensors' '$out/run/model.safetensors' && cmp -s '$out/ref/train_state.safetensors' '$out/run/train_state.safetensors'"
  check "SIG$sig: CSV has every step once, same values ($mode)" "[ \"\$(cut -d, -f1-4 '$out/ref.csv')\" = \"\$(cut -d, -f1-4 '$out/run.csv')\" ]"
done

# --- a second signal stops at once, the published checkpoint stays whole ----
common="--model $out/init --data $out/tok.bin --steps 100000 --batch 2 --seq 8 --seed 5"
rm -rf "$out/two"
# shellcheck disable=SC2086
"$lspo" train $common --save "$out/two" --save-every 1 > "$out/two.out" 2>&1 &
pid=$!
n=0; while [ ! -e "$out/two/latest" ] && [ $n -lt 600 ]; do sleep 0.02; n=$((n + 1)); done
kill -TERM $pid; kill -TERM $pid; wait $pid; rc=$?
check "two signals: exit 75" "[ $rc -eq 75 ]"
check "two signals: the published checkpoint verifies" "'$lspo' check --ckpt '$out/two' > /dev/null 2>&1"

# --- resume refuses other options, naming them -------------------------------
base="--data $out/tok.bin --steps 8 --batch 2 --seq 8 --lr 1e-3 --seed 5"
# shellcheck disable=SC2086
"$lspo" train --model "$out/init" $base --steps 4 --save "$out/four" > /dev/null 2>&1 || { echo "FAILED: 4-step run"; fail=1; }
# shellcheck disable=SC2086
expect 2 "--batch" "$lspo" train --resume "$out/four" $base --batch 3
# shellcheck disable=SC2086
expect 2 "--seed" "$lspo" train --resume "$out/four" $base --seed 6
# shellcheck disable=SC2086
expect 2 "--seq" "$lspo" train --resume "$out/four" $base --seq 12
# shellcheck disable=SC2086
expect 2 "--lr resume-override" "$lspo" train --resume "$out/four" $base --lr 2e-3
printf 'Other text, other tokens.' > "$out/other.txt"; i=0
while [ $i -lt 6 ]; do cat "$out/other.txt" "$out/other.txt" > "$out/o2" && mv "$out/o2" "$out/other.txt"; i=$((i + 1)); done
"$lspo" tokenize --bytes "$out/other.txt" "$out/other.bin" > /dev/null
# shellcheck disable=SC2086
expect 2 "--data" "$lspo" train --resume "$out/four" $base --data "$out/other.bin"
# shellcheck disable=SC2086
expect 2 "--mode" "$lspo" train --resume "$out/four" $base --mode zero
# shellcheck disable=SC2086
"$lspo" train --resume "$out/four" $base --lr 2e-3 --resume-override > "$out/x.out" 2>&1
check "--resume-override accepts a new --lr and says so" "[ $? -eq 0 ] && grep -q 'lr changes from 0.001 to 0.002' '$out/x.out'"
# shellcheck disable=SC2086
expect 2 "--save" "$lspo" train --model "$out/init" $base --resume auto
# shellcheck disable=SC2086
expect 2 "--save-every" "$lspo" train --model "$out/init" $base --save-every 2

# a training state at step 2^31 - 1 (no manifest to compare): refused at once
mkdir -p "$out/huge-step" && cp "$out/four/latest/"* "$out/huge-step/" && rm "$out/huge-step/manifest.json"
python3 - "$out/huge-step/train_state.safetensors" <<'EOF2' || { echo "FAILED: crafting a state"; fail=1; }
import json, struct, sys
path = sys.argv[1]
b = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
off = 8 + n + json.loads(b[8:8 + n])["step"]["data_offsets"][0]
b[off:off + 4] = struct.pack("<i", 2**31 - 1)
open(path, "wb").write(b)
EOF2
# shellcheck disable=SC2086
expect 2 "step 2147483647 beyond --steps 8" timeout 60 "$lspo" train --resume "$out/huge-step" $base

# --- verification: damaged, mixed and non-finite checkpoints ---------------
rm -rf "$out/v"
# shellcheck disable=SC2086
"$lspo" train --model "$out/init" $base --save "$out/v" --save-every 2 --keep 3 > /dev/null 2>&1
check "--keep 3 keeps three checkpoints" "[ \$(ls -d '$out/v'/step-* | wc -l) -eq 3 ] && [ \"\$(readlink '$out/v/latest')\" = step-00000008 ]"
rm -rf "$out/minutes"
# shellcheck disable=SC2086
"$lspo" train --model "$out/init" $base --save "$out/minutes" --save-every-min 0.00001 --keep 100 > "$out/x.out" 2>&1
check "--save-every-min: a save after every step here" "[ \$(ls -d '$out/minutes'/step-* | wc -l) -eq 8 ]"
cp -r "$out/v/step-00000006" "$out/mixed"
cp "$out/v/step-00000004/train_state.safetensors" "$out/mixed/"   # new weights beside old state
expect 1 "train_state.safetensors CRC-32C" "$lspo" check --ckpt "$out/mixed"
# shellcheck disable=SC2086
expect 1 "train_state.safetensors" "$lspo" train --resume "$out/mixed" $base
cp -r "$out/v/step-00000006" "$out/cut"
head -c 1000 "$out/v/step-00000006/model.safetensors" > "$out/cut/model.safetensors"
expect 1 "model.safetensors bytes" "$lspo" check --ckpt "$out/cut"
cp -r "$out/v/step-00000006" "$out/gone"; rm "$out/gone/config.json"
expect 1 "config.json" "$lspo" check --ckpt "$out/gone"
# a NaN weight: check, eval and train name the tensor; nothing trains on it
python3 - "$out/init/model.safetensors" "$out/nan" <<'EOF' || { echo "FAILED: crafting a NaN checkpoint"; fail=1; }
import json, os, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
shutil.copy(os.path.join(os.path.dirname(src), "config.json"), dst)
b = bytearray(open(src, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
off = 8 + n + h["h.0.mlp.c_fc.weight"]["data_offsets"][0] + 4 * 5
b[off:off + 4] = struct.pack("<f", float("nan"))
open(os.path.join(dst, "model.safetensors"), "wb").write(b)
EOF
expect 1 "h.0.mlp.c_fc.weight non-finite" "$lspo" check --ckpt "$out/nan"
expect 1 "h.0.mlp.c_fc.weight non-finite" "$lspo" eval --model "$out/nan" --data "$out/tok.bin" --seq 8
# shellcheck disable=SC2086
expect 1 "h.0.mlp.c_fc.weight non-finite" "$lspo" train --model "$out/nan" $base --save "$out/nan-out"

# huge but finite embeddings: the gradient norm is NaN; each step is skipped
# (weights and optimizer state unchanged, bit for bit) and the run stops
# after --max-bad-steps; no checkpoint holds a non-finite value
python3 - "$out/init/model.safetensors" "$out/big" <<'EOF2' || { echo "FAILED: crafting a huge checkpoint"; fail=1; }
import json, os, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
shutil.copy(os.path.join(os.path.dirname(src), "config.json"), dst)
b = bytearray(open(src, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
C = h["wte.weight"]["shape"][1]
for tok in range(256):
    off = 8 + n + h["wte.weight"]["data_offsets"][0] + 4 * (tok * C + 3)
    b[off:off + 4] = struct.pack("<f", 3e38)
open(os.path.join(dst, "model.safetensors"), "wb").write(b)
EOF2
for m in native zero "lsp --lsp-d 8 --lsp-r 2"; do
  rm -rf "$out/bigout"
  # shellcheck disable=SC2086
  expect 1 "step 1: non-finite wte.weight skipped --max-bad-steps" "$lspo" train --model "$out/big" $base --mode $m --save "$out/bigout" --save-every 1 --max-bad-steps 2
  check "bad steps: weights unchanged ($m)" "cmp -s '$out/big/model.safetensors' '$out/bigout/step-00000001/model.safetensors'"
  check "bad steps: the saved state verifies and is finite ($m)" "'$lspo' check --ckpt '$out/bigout' > /dev/null 2>&1"
  check "bad steps: nothing saved after the stop ($m)" "[ \"\$(readlink '$out/bigout/latest')\" = step-00000001 ]"
done

# --- lock, temporary files of killed saves -------------------------------------
if command -v flock > /dev/null; then
  flock "$out/v/.lock" sleep 2 &
  lk=$!; sleep 0.5
  # shellcheck disable=SC2086
  expect 1 "another lspo run" "$lspo" train --model "$out/init" $base --save "$out/v"
  wait $lk
fi
mkdir -p "$out/v/.tmp-step-00000009.999999"; echo x > "$out/v/.tmp-step-00000009.999999/model.safetensors"
cp -r "$out/v/step-00000008" "$out/v/step-00000009"   # renamed, never published
# shellcheck disable=SC2086
"$lspo" train --model "$out/init" $base --save "$out/v" --resume auto > "$out/x.out" 2>&1
check "a finished run resumes to nothing to do" "[ $? -eq 0 ] && grep -q 'nothing to do' '$out/x.out'"
check "temporary and unpublished saves removed" "[ ! -e '$out/v/.tmp-step-00000009.999999' ] && [ ! -e '$out/v/step-00000009' ]"

# a new run (no --resume) never replaces a saved run's checkpoints
# shellcheck disable=SC2086
expect 1 "already holds --resume auto" "$lspo" train --model "$out/init" $base --save "$out/v"
check "the saved run stays" "[ \"\$(readlink '$out/v/latest')\" = step-00000008 ] && [ \$(ls -d '$out/v'/step-* | wc -l) -eq 3 ]"

# a full disk during a save: exit 1, the previous checkpoint stays published
# and verified, no temporary file stays (a small tmpfs; skipped where this
# test cannot mount one)
mkdir -p "$out/full"
if mount -t tmpfs -o size=350k tmpfs "$out/full" 2> /dev/null; then
  trap 'umount "$out/full" 2> /dev/null' EXIT
  # shellcheck disable=SC2086
  expect 1 "No space left on device the previous one stays published" "$lspo" train --model "$out/init" $base --steps 20 --save "$out/full/run" --save-every 1 --keep 3
  check "full disk: the published checkpoint verifies" "'$lspo' check --ckpt '$out/full/run' > /dev/null 2>&1"
  check "full disk: no temporary file" "[ -z \"\$(ls -A '$out/full/run' | grep tmp)\" ]"
  umount "$out/full"; trap - EXIT
else
  echo "test_jobs: no tmpfs mount here: the full-disk case is not run"
fi

# --- outputs never destroy inputs; checks before training ---------------------
expect 1 "--log tok.bin same file" "$lspo" train --model "$out/init" $base --log "$out/tok.bin"
check "--log onto the data: data untouched" "cmp -s '$out/tok.bin' '$out/tok.orig'"
expect 1 "--log model.safetensors same file" "$lspo" train --model "$out/init" $base --log "$out/init/model.safetensors"
expect 1 "--log device" "$lspo" train --model "$out/init" $base --log /dev/full
expect 1 "--save not a directory" "$lspo" train --model "$out/init" $base --save "$out/tok.bin"
expect 1 "--save tok.bin/x" "$lspo" train --model "$out/init" $base --save "$out/tok.bin/x"
expect 1 "--save input" "$lspo" train --model "$out/init" $base --save "$out/init"
check "--save onto the model: model untouched" "[ -f '$out/init/model.safetensors' ] && [ ! -L '$out/init/model.safetensors' ]"
mkfifo "$out/fifo"
expect 1 "--data fifo FIFO" timeout 20 "$lspo" train --model "$out/init" $base --data "$out/fifo"
expect 1 "fifo FIFO" timeout 20 "$lspo" check "$out/fifo"
expect 1 "--config-json fifo FIFO" timeout 20 "$lspo" init --config-json "$out/fifo" --out "$out/fromfifo"
expect 1 "OUT fifo" timeout 20 "$lspo" tokenize --bytes "$out/text.txt" "$out/fifo"
cp "$out/text.txt" "$out/text.orig"
expect 1 "same file" "$lspo" tokenize --bytes "$out/text.txt" "$out/text.txt"
check "tokenize onto its input: input untouched" "cmp -s '$out/text.txt' '$out/text.orig'"
expect 2 "--val-fraction sequence" "$lspo" train --model "$out/init" $base --val-fraction 0.001
expect 1 "not empty --force" "$lspo" init --vocab 256 --n-positions 16 --n-embd 16 --n-layer 1 --n-head 2 --out "$out/v"
check "init onto a trained checkpoint: untouched" "'$lspo' check --ckpt '$out/v' > /dev/null 2>&1"
cp -r "$out/v/step-00000008" "$out/forced"
"$lspo" init --vocab 256 --n-positions 16 --n-embd 16 --n-layer 1 --n-head 2 --seed 3 --out "$out/forced" --force > /dev/null 2>&1
check "init --force: new weights, no stale training state" "[ $? -eq 0 ] && [ ! -e '$out/forced/train_state.safetensors' ] && cmp -s '$out/forced/model.safetensors' '$out/init/model.safetensors'"
expect 2 "n_embd bytes" "$lspo" init --vocab 2147483000 --n-positions 1024 --n-embd 536870912 --n-layer 1 --n-head 1 --out "$out/huge"
expect 2 "bytes" "$lspo" init --vocab 50257 --n-positions 1024 --n-embd 65536 --n-layer 96 --n-head 64 --out "$out/huge"
check "impossible configs write nothing" "[ ! -e '$out/huge' ]"

# --- --config FILE, and the effective configuration next to the checkpoint ----
printf '{"steps": 6, "batch": 2, "seq": 8, "lr": 0.001, "seed": 5, "save_every": 3}\n' > "$out/job.json"
"$lspo" train --config "$out/job.json" --model "$out/init" --data "$out/tok.bin" --steps 4 --save "$out/cfg" > "$out/cfg.out" 2>&1
check "--config: the command line overrides the file" "[ $? -eq 0 ] && [ \$(grep -c '^step ' '$out/cfg.out') -eq 4 ] && [ \"\$(readlink '$out/cfg/latest')\" = step-00000004 ]"
check "--config: the effective options saved" "grep -q '\"steps\": \"4\"' '$out/cfg/train_config.json' && grep -q '\"save-every\": \"3\"' '$out/cfg/train_config.json'"
"$lspo" train --config "$out/cfg/train_config.json" --save "$out/cfg2" > "$out/cfg2.out" 2>&1
check "the saved configuration reruns the run" "[ $? -eq 0 ] && cmp -s '$out/cfg/model.safetensors' '$out/cfg2/model.safetensors'"
printf '{"steps": "many"}\n' > "$out/bad.json"
expect 2 "--steps" "$lspo" train --config "$out/bad.json" --model "$out/init" --data "$out/tok.bin"
printf '{"steps": [1]}\n' > "$out/bad.json"
expect 2 "bad.json steps" "$lspo" train --config "$out/bad.json" --model "$out/init" --data "$out/tok.bin"
printf '{"steps": 3,' > "$out/bad.json"
expect 1 "bad.json JSON" "$lspo" train --config "$out/bad.json" --model "$out/init" --data "$out/tok.bin"

[ $fail -eq 0 ] && echo "test_jobs: all checks passed"
exit $fail
