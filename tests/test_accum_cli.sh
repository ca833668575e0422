#!/bin/sh
# test_accum_cli.sh - `lspo train --grad-accum K` and `--checkpoint-activations
# [K]` through the CLI (issue 13):
#   - --grad-accum 4 --batch 2 draws the rows of --batch 8 (the loader's
#     order) and its losses equal --batch 8's within 1e-6 relative (the
#     printed 6 decimals), in native, zero, zero with bf16 offload and lsp;
#   - --checkpoint-activations (every block, every 2, with grad-accum) prints
#     the plain run's step lines, and its trace has tasks of stage recompute,
#     none in the plain run's;
#   - a run saved with --grad-accum 2 refuses to resume with another K;
#   - bad values exit 2 naming the option.
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/accum_cli"
rm -rf "$out"; mkdir -p "$out"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; else echo "ok: $1"; fi; }

i=0; while [ $i -lt 40 ]; do
  echo "Micro-batches add their gradients; the step offloads once and updates once." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
"$lspo" init --vocab 256 --n-positions 32 --n-embd 32 --n-layer 3 --n-head 2 --seed 3 --out "$out/gpt2" > /dev/null \
  || { echo "init failed"; exit 1; }
"$lspo" init --family llama --vocab 256 --n-positions 32 --n-embd 32 --n-layer 3 --n-head 4 --n-kv-head 2 \
  --intermediate 48 --seed 3 --out "$out/llama" > /dev/null || { echo "llama init failed"; exit 1; }

# train NAME MODEL ARGS...: 4 steps, CSV log in NAME.csv
train() {
  name=$1 model=$2; shift 2
  "$lspo" train --model "$out/$model" --data "$out/tok.bin" --steps 4 --seq 16 --lr 2e-3 --seed 7 \
    --check-freq 0 --log "$out/$name.csv" "$@" > "$out/$name.out" 2> "$out/$name.err" \
    || { echo "FAILED: lspo train $*"; tail -n 5 "$out/$name.err"; fail=1; }
}
# close A B: the loss columns of two logs agree within 1e-6 relative (plus the last printed digit)
close() {
  paste -d, "$out/$1.csv" "$out/$2.csv" | awk -F, 'NR > 1 { n++; d = $2 - $10; if (d < 0) d = -d;
    if (d > 1e-6 * $10 + 1e-6) bad++ } END { exit !(n == 4 && !bad) }'
}
steps() { sed -n 's/^\(step.*| norm [0-9.]*\) .*/\1/p' "$out/$1.out"; }

for mode in native zero zero-bf16 lsp; do
  case $mode in
    zero-bf16) args="--mode zero --offload-dtype bf16" ;;
    lsp) args="--mode lsp --lsp-d 8 --lsp-r 2" ;;
    *) args="--mode $mode" ;;
  esac
  # shellcheck disable=SC2086
  train big-$mode gpt2 --batch 8 $args
  # shellcheck disable=SC2086
  train acc-$mode gpt2 --batch 2 --grad-accum 4 $args
  check "gpt2 $mode: --grad-accum 4 --batch 2 = --batch 8 (losses within 1e-6)" "close acc-$mode big-$mode"
done
check "accumulation announced" "grep -q '^gradient accumulation: 4 micro-batches of 2 sequences' '$out/acc-native.out'"
train big-llama llama --batch 6 --mode lsp --lsp-d 8 --lsp-r 2
train acc-llama llama --batch 2 --grad-accum 3 --mode lsp --lsp-d 8 --lsp-r 2
check "llama lsp: --grad-accum 3 --batch 2 = --batch 6" "close acc-llama big-llama"
# another batch: other rows, other losses (the comparison above can fail)
train other gpt2 --batch 2 --grad-accum 4 --seed 8
check "another seed gives other losses" "! close other big-native"

# Checkpointing: the same step lines, bit for bit as printed; recompute tasks in the trace.
train plain gpt2 --batch 4 --mode lsp --lsp-d 8 --lsp-r 2 --trace "$out/plain.trace"
train ckpt1 gpt2 --batch 4 --mode lsp --lsp-d 8 --lsp-r 2 --checkpoint-activations --trace "$out/ckpt1.trace"
train ckpt2 gpt2 --batch 4 --mode lsp --lsp-d 8 --lsp-r 2 --checkpoint-activations 2
train ckpt2b gpt2 --batch 4 --mode lsp --lsp-d 8 --lsp-r 2 --checkpoint-activations=2 --sched dmdas
check "checkpointing every block: same steps" "[ -n \"\$(steps plain)\" ] && [ \"\$(steps ckpt1)\" = \"\$(steps plain)\" ]"
check "checkpointing every 2 blocks: same steps" "[ \"\$(steps ckpt2)\" = \"\$(steps plain)\" ]"
check "checkpointing every 2 blocks under dmdas: same steps" "[ \"\$(steps ckpt2b)\" = \"\$(steps plain)\" ]"
check "checkpointing announced" "grep -q '^activation checkpointing: segments of 1 block' '$out/ckpt1.out' && grep -q 'segments of 2 block' '$out/ckpt2.out' && grep -q 'segments of 2 block' '$out/ckpt2b.out'"
nrec=$(grep -c ',recompute,' "$out/ckpt1.trace/tasks.csv" 2>/dev/null)
check "recompute tasks in the trace ($nrec), of blocks 0 and 1 only" "[ \${nrec:-0} -gt 0 ] && ! grep ',recompute,' '$out/ckpt1.trace/tasks.csv' | cut -d, -f3 | grep -qv '^[01]\$'"
check "no recompute task without checkpointing" "! grep -q ',recompute,' '$out/plain.trace/tasks.csv'"
train lplain llama --batch 2 --grad-accum 2
train lckpt llama --batch 2 --grad-accum 2 --checkpoint-activations --sched eager
check "llama, grad-accum and checkpointing: same steps" "[ -n \"\$(steps lplain)\" ] && [ \"\$(steps lckpt)\" = \"\$(steps lplain)\" ]"

# Resume: the micro-batch count is part of the trajectory.
"$lspo" train --model "$out/gpt2" --data "$out/tok.bin" --steps 2 --batch 2 --seq 16 --grad-accum 2 \
  --save "$out/saved" > /dev/null 2>&1 || { echo "FAILED: save"; fail=1; }
"$lspo" train --resume "$out/saved" --data "$out/tok.bin" --steps 3 --batch 2 --seq 16 --grad-accum 4 \
  > "$out/resume.out" 2> "$out/resume.err"
check "resume with another --grad-accum refused" "[ $? -eq 2 ] && grep -q 'grad-accum' '$out/resume.err'"
"$lspo" train --resume "$out/saved" --data "$out/tok.bin" --steps 3 --batch 2 --seq 16 --grad-accum 2 \
  --checkpoint-activations > "$out/resume2.out" 2> "$out/resume2.err"
check "resume with the same --grad-accum (and checkpointing) runs" "[ $? -eq 0 ] && grep -q '^step     3 ' '$out/resume2.out'"

bad() {  # expected exit code, a word the message must contain, then the arguments of train
  want=$1 word=$2; shift 2
  "$lspo" train --model "$out/gpt2" --data "$out/tok.bin" --steps 1 --seq 16 "$@" > "$out/bad.out" 2> "$out/bad.err"
  rc=$?
  check "train $* exits $want naming $word" "[ $rc -eq $want ] && grep -q -- '$word' '$out/bad.err'"
}
bad 2 --grad-accum --grad-accum 0
bad 2 --grad-accum --grad-accum -2
bad 2 --grad-accum --grad-accum x
bad 2 --grad-accum --grad-accum
bad 2 --checkpoint-activations --checkpoint-activations 0
bad 2 --checkpoint-activations --checkpoint-activations=-1
bad 2 --checkpoint-activations --checkpoint-activations=two
bad 2 "sequences per step" --grad-accum 65536 --batch 64
check "help documents both options" "\"$lspo\" train --help | grep -q -- '--grad-accum K' && \"$lspo\" train --help | grep -q -- '--checkpoint-activations'"
[ $fail -eq 0 ] && echo "test_accum_cli: all checks passed"
exit $fail
