#!/bin/sh
# test_mem.sh - memory in the reports (issue 13): `lspo plan` (the analytic
# footprint, whether a run fits, bad input), and on this CPU-only machine the
# peak StarPU reports against the footprint.
#
# What StarPU counts on a CPU-only machine: main memory's allocator holds
# only what StarPU allocates itself, the handles without host memory
# (activations, lsp's A = P^T X^T, scratch buffers); parameters, gradients,
# moments and projectors live in the engine's own slabs.  With one CPU worker
# the engine does not split products (no activation slab), so the reported
# peak must equal the footprint's `lazy` part (activations + the largest
# scratch) within 5 %: GPT-2 and a Llama with grouped-query attention, native
# and lsp (also with --dtype bf16 --bf16-update stochastic).  On an
# accelerator the whole footprint is StarPU's: test_sim.sh checks it on the
# simulated GPU.
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/mem"
rm -rf "$out"; mkdir -p "$out"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; else echo "ok: $1"; fi; }

"$lspo" init --vocab 256 --n-positions 64 --n-embd 64 --n-layer 2 --n-head 4 --out "$out/gpt2" > /dev/null \
  || { echo "init failed"; exit 1; }
"$lspo" init --family llama --vocab 256 --n-positions 64 --n-embd 64 --n-layer 2 --n-head 4 --n-kv-head 2 \
  --intermediate 96 --out "$out/llama" > /dev/null || { echo "llama init failed"; exit 1; }
i=0; while [ $i -lt 40 ]; do echo "The footprint is a sum; the peak is what StarPU holds."; i=$((i + 1)); done > "$out/text.txt"
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }

# field NAME FILE: a number of the "footprint bytes:" line
field() { sed -n "s/^footprint bytes:.* $1 \([0-9]*\).*/\1/p" "$2"; }

# --- lspo plan ---------------------------------------------------------------
"$lspo" plan --model "$out/gpt2" --mode native --batch 2 --seq 32 --gpu-mem 64 > "$out/plan.out" 2>&1
check "plan exits 0" "[ $? -eq 0 ]"
check "plan names the run" "grep -q '^lspo plan: .*gpt2, 2 layers, n_embd 64, vocab 256, .*mode native, B 2, T 32' '$out/plan.out'"
check "plan lists the kinds" "grep -q '^accelerator footprint (analytic): weights .* gradients .* optimizer states .* activations .* projectors .* workspace .* total' '$out/plan.out'"
check "plan says it fits 64 MiB" "grep -q '^fits: yes' '$out/plan.out'"
# native: weights + gradients = 4 bytes each per parameter, AdamW's moments 8
w=$(field weights "$out/plan.out") g=$(field gradients "$out/plan.out") o=$(field optimizer "$out/plan.out")
check "native: 4 B weights, 4 B gradients, 8 B moments per parameter" "[ $o -eq $((2 * w)) ] && [ $g -eq $w ] && [ $w -gt 0 ]"
"$lspo" plan --model "$out/gpt2" --mode native --batch 2 --seq 32 --gpu-mem 1 > "$out/plan1.out" 2>&1
check "plan says it does not fit 1 MiB" "grep -q '^fits: no, needs .* more than 1 MiB' '$out/plan1.out'"
"$lspo" plan --model "$out/gpt2" --mode zero --batch 2 --seq 32 > "$out/zero.out"
"$lspo" plan --model "$out/gpt2" --mode lsp --lsp-d 16 --lsp-r 4 --batch 2 --seq 32 > "$out/lsp.out"
check "zero keeps no moments on the accelerator" "[ $(field optimizer "$out/zero.out") -eq 0 ]"
check "lsp needs less than native, zero less than native" \
  "[ $(field device "$out/lsp.out") -lt $(field device "$out/plan.out") ] && [ $(field device "$out/zero.out") -lt $(field device "$out/plan.out") ]"
"$lspo" plan --model "$out/gpt2" --mode lsp --lsp-d 16 --lsp-r 4 --batch 2 --seq 32 --dtype bf16 \
  --checkpoint-activations --grad-accum 4 > "$out/small.out"
check "bf16 and checkpointing shrink the activations" \
  "[ $(field activations "$out/small.out") -lt $(field activations "$out/lsp.out") ] && grep -q 'checkpointing every 1 block' '$out/small.out'"
"$lspo" plan --model "$out/llama" --mode lsp --lsp-targets q,v --batch 2 --seq 32 --lsp-d 16 --lsp-r 4 > "$out/llama-plan.out"
check "llama plan with targets" "grep -q 'llama, 2 layers' '$out/llama-plan.out' && [ $(field projectors "$out/llama-plan.out") -gt 0 ]"

# --bf16-update stochastic: no fp32 master on the accelerator, 4 bytes per
# parameter less in native and lsp mode, nothing else changes
for mode in native lsp; do
  "$lspo" plan --model "$out/gpt2" --mode $mode --lsp-d 16 --lsp-r 4 --batch 2 --seq 32 --dtype bf16 > "$out/m-$mode.out"
  "$lspo" plan --model "$out/gpt2" --mode $mode --lsp-d 16 --lsp-r 4 --batch 2 --seq 32 --dtype bf16 \
    --bf16-update stochastic > "$out/sr-$mode.out"
  n=$(sed -n 's/.*, \([0-9.]*\)M parameters.*/\1/p' "$out/sr-$mode.out")
  wm=$(field weights "$out/m-$mode.out") ws=$(field weights "$out/sr-$mode.out")
  check "$mode --bf16-update stochastic: weights 2 B per parameter, 6 B with masters" \
    "[ $((3 * ws)) -eq $wm ] && [ $(field gradients "$out/sr-$mode.out") -eq $(field gradients "$out/m-$mode.out") ] && grep -q 'stochastic updates, no fp32 master' '$out/sr-$mode.out'"
done
, unreadable models 1, each naming what is wrong
bad() {   # bad NAME CODE PATTERN ARGS...
  name=$1 code=$2 pat=$3; shift 3
  "$lspo" plan "$@" > "$out/bad.out" 2>&1
  rc=$?
  check "plan: $name (exit $code)" "[ $rc -eq $code ] && grep -q -- \"$pat\" '$out/bad.out'"
}
bad "no --model" 2 "--model DIR is required" --mode lsp
bad "unknown mode" 2 "--mode: expected native, zero or lsp" --model "$out/gpt2" --mode fast
bad "bad --gpu-mem" 2 "--gpu-mem: expected an integer" --model "$out/gpt2" --gpu-mem lots
bad "r above d" 2 "--lsp-r 8 is larger than --lsp-d 4" --model "$out/gpt2" --mode lsp --lsp-d 4 --lsp-r 8
bad "unknown target" 2 "unknown target 'q'" --model "$out/gpt2" --mode lsp --lsp-targets q
bad "bad dtype" 2 "--dtype: expected fp32 or bf16" --model "$out/gpt2" --dtype fp8
bad "unknown option" 2 "unknown option" --model "$out/gpt2" --fast
bad "stochastic without bf16" 2 "--bf16-update stochastic needs --dtype bf16" --model "$out/gpt2" --bf16-update stochastic
bad "stochastic in zero mode" 2 "applies to --mode native and lsp" --model "$out/gpt2" --mode zero --dtype bf16 \
  --bf16-update stochastic
bad "bad --bf16-update" 2 "--bf16-update: expected master or stochastic" --model "$out/gpt2" --dtype bf16 --bf16-update up
bad "missing checkpoint" 1 "no readable config.json" --model "$out/nothing"
bad "sequence beyond the context" 1 "exceeds the model's context" --model "$out/gpt2" --seq 65

# --- the peak StarPU reports against the footprint (one CPU worker) ---------
# With checkpointing (engine/recompute.c: K block slots, one kept output per
# segment), gradient accumulation and --dtype bf16 the same holds.
"$lspo" init --vocab 256 --n-positions 64 --n-embd 64 --n-layer 4 --n-head 4 --out "$out/gpt2-4" > /dev/null \
  || { echo "init failed"; exit 1; }
for case in "gpt2 native" "gpt2 lsp" "llama native" "llama lsp" "gpt2-4 native --checkpoint-activations 1" \
            "gpt2-4 lsp --checkpoint-activations 3" "llama lsp --checkpoint-activations 1 --grad-accum 2" \
            "gpt2 native --dtype bf16" "llama lsp --dtype bf16" "gpt2 zero --offload-dtype bf16" \
            "gpt2 lsp --dtype bf16 --bf16-update stochastic" "llama native --dtype bf16 --bf16-update stochastic"; do
  set -- $case
  model=$1 mode=$2; shift 2
  name=$model-$mode$(echo "$*" | tr -d ' -')
  "$lspo" plan --model "$out/$model" --mode $mode --batch 2 --seq 32 --lsp-d 16 --lsp-r 4 "$@" > "$out/$name.plan"
  lazy=$(field lazy "$out/$name.plan")
  "$lspo" train --model "$out/$model" --data "$out/tok.bin" --steps 2 --batch 2 --seq 32 --mode $mode --lsp-d 16 \
    --lsp-r 4 --check-freq 0 --ncpus 1 --log "$out/$name.csv" "$@" > "$out/$name.out" 2>&1 \
    || { echo "FAILED: train $name"; tail -n 3 "$out/$name.out"; fail=1; continue; }
  peak=$(awk -F, 'NR == 3 { print $9 }' "$out/$name.csv")
  echo "$name: StarPU's peak in main memory ${peak:-?} B, footprint (what StarPU allocates itself) $lazy B"
  check "$name: peak = footprint within 5%" \
    "awk 'BEGIN { p = ${peak:-0}; f = ${lazy:-1}; d = p - f; if (d < 0) d = -d; exit !(p > 0 && d <= 0.05 * f) }'"
  check "$name: train prints the footprint and the run's peak" \
    "grep -q '^accelerator footprint (analytic)' '$out/$name.out' && grep -q '^memory peak (StarPU.s allocations): ' '$out/$name.out'"
  check "$name: no eviction on a CPU-only machine" "[ \"\$(awk -F, 'NR > 1 { s += \$10 + \$11 } END { print s + 0 }' '$out/$name.csv')\" = 0 ]"
done
[ $fail -eq 0 ] && echo "test_mem: all checks passed"
exit $fail
