#!/bin/sh
# test_bf16_cli.sh - `lspo train --dtype`: bad values are usage errors naming
# the option, bf16 trains GPT-2 and Llama models in every mode, the run's
# dtype is part of its identity on resume.
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/bf16_cli"
rm -rf "$out"; mkdir -p "$out"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; else echo "ok: $1"; fi; }

i=0; while [ $i -lt 20 ]; do
  echo "bf16 keeps eight bits of mantissa; the masters keep the small updates." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
"$lspo" init --vocab 256 --n-positions 32 --n-embd 32 --n-layer 2 --n-head 2 --seed 3 --out "$out/gpt2" \
  > /dev/null || { echo "init failed"; exit 1; }
"$lspo" init --family llama --vocab 256 --n-positions 32 --n-embd 32 --n-layer 2 --n-head 4 --n-kv-head 2 \
  --intermediate 48 --seed 3 --out "$out/llama" > /dev/null || { echo "init failed"; exit 1; }
run="--data $out/tok.bin --steps 3 --batch 2 --seq 16 --lr 1e-3"

for bad in foo fp16 BF16 ""; do
  # shellcheck disable=SC2086
  "$lspo" train --model "$out/gpt2" $run --dtype "$bad" > "$out/bad.out" 2> "$out/bad.err"
  check "--dtype '$bad' is a usage error" "[ $? -eq 2 ] && grep -q -- \"--dtype: expected fp32 or bf16, got '$bad'\" '$out/bad.err'"
done

for model in gpt2 llama; do
  for mode in native zero "zero --offload-dtype bf16" "lsp --lsp-d 8 --lsp-r 2 --check-freq 2"; do
    # shellcheck disable=SC2086
    "$lspo" train --model "$out/$model" $run --dtype bf16 --mode $mode > "$out/run.out" 2> "$out/run.err"
    check "$model --mode $mode --dtype bf16 trains" "[ $? -eq 0 ] && [ \$(grep -c '^step ' '$out/run.out') -eq 3 ] \
      && grep -q '^dtype bf16: working weights [0-9.]* MiB, activations [0-9.]* MiB' '$out/run.out'"
  done
done

# With activation checkpointing and gradient accumulation (issue 13): the
# recomputed forward rounds as the first did, so the losses are the same bit
# for bit; K micro-batches equal one batch of K B within float summation
# order (weight gradients are float32).
losses() { sed -n 's/^step .*| loss \([0-9.]*\) |.*/\1/p' "$1" | tr '\n' ' '; }
for model in gpt2 llama; do
  # shellcheck disable=SC2086
  "$lspo" train --model "$out/$model" $run --dtype bf16 --mode lsp --lsp-d 8 --lsp-r 2 --check-freq 0 \
    > "$out/plain.out" 2>&1
  # shellcheck disable=SC2086
  "$lspo" train --model "$out/$model" $run --dtype bf16 --mode lsp --lsp-d 8 --lsp-r 2 --check-freq 0 \
    --checkpoint-activations > "$out/ckpt.out" 2>&1
  check "$model bf16: checkpointed losses equal plain ones" \
    "[ -n \"\$(losses '$out/plain.out')\" ] && [ \"\$(losses '$out/plain.out')\" = \"\$(losses '$out/ckpt.out')\" ]"
  # shellcheck disable=SC2086
  "$lspo" train --model "$out/$model" $run --batch 1 --grad-accum 2 --dtype bf16 --mode lsp --lsp-d 8 --lsp-r 2 \
    --check-freq 0 > "$out/accum.out" 2>&1
  check "$model bf16: --grad-accum 2 --batch 1 near --batch 2" \
    "echo \"\$(losses '$out/plain.out')|\$(losses '$out/accum.out')\" | awk -F'|' '{ n = split(\$1, a, \" \"); \
      m = split(\$2, b, \" \"); if (n != 3 || m != 3) exit 1; for (i = 1; i <= n; i++) \
      if (a[i] - b[i] > 1e-5 * a[i] || b[i] - a[i] > 1e-5 * a[i]) exit 1 }'"
done

# A bf16 run resumes as bf16 only.
# shellcheck disable=SC2086
"$lspo" train --model "$out/gpt2" $run --dtype bf16 --save "$out/sv" > /dev/null 2>&1
check "bf16 run saves" "[ $? -eq 0 ]"
# shellcheck disable=SC2086
"$lspo" train --model "$out/gpt2" $run --steps 4 --resume auto --save "$out/sv" > /dev/null 2> "$out/resume.err"
check "resume as fp32 refused, naming --dtype" "[ $? -ne 0 ] && grep -q 'option --dtype differs' '$out/resume.err'"
# shellcheck disable=SC2086
"$lspo" train --model "$out/gpt2" $run --steps 4 --resume auto --save "$out/sv" --dtype bf16 > "$out/resume.out" 2>&1
check "resume as bf16" "[ $? -eq 0 ] && grep -q '^step     4 ' '$out/resume.out'"
exit $fail
