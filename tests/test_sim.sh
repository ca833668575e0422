#!/bin/sh
# test_sim.sh - the offload modes on a simulated CPU+GPU node (lspo built
# against StarPU's SimGrid variant; run by scripts/check, not by make check).
# What only a GPU's bus can show, checked on the simulated one, per step
# once placement has settled (steps 3 to 5):
#   - lsp and zero move their analytic volume each way (lsp: 4 d^2 bytes per
#     matrix; zero: 4 bytes per parameter, 2 with bf16), plus only the step's own inputs
#     and outputs (tokens h2d, losses d2h: a few KiB);
#   - native moves nothing but those, under the lspo policy;
#   - the lspo policy keeps the GPU busy in lsp mode and hides the offload
#     (trace summary: GPU busy >= 85 % with 4 layers, transfers hidden >= 50 %),
#     and lsp's step is shorter than zero's;
#   - a Llama-family model's zero and lsp move their analytic volume too;
#   - with --grad-accum 2 (and activation checkpointing) zero and lsp move
#     one batch's volume per step, as without.
# Usage: LSPO_BUILDDIR=build/sim tests/test_sim.sh
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/sim"
rm -rf "$out"; mkdir -p "$out"
"$top/scripts/sim-platform" "$out/platform" 25 || exit 99
export STARPU_PERF_MODEL_DIR="$out/platform" STARPU_HOSTNAME=node STARPU_NCPU=4 STARPU_NCUDA=1 STARPU_NOPENCL=0
export STARPU_HOME="$out/home" STARPU_SILENT=1
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; else echo "ok: $1"; fi; }

B=4 T=128
"$lspo" init --vocab 256 --n-positions $T --n-embd 256 --n-layer 4 --n-head 4 --out "$out/model" > /dev/null 2>&1 \
  || { echo "init failed"; exit 99; }
i=0; while [ $i -lt 60 ]; do echo "Gradients go to the host, updates come back; the device never waits."; i=$((i + 1)); done > "$out/text.txt"
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null 2>&1 || { echo "tokenize failed"; exit 99; }

# run NAME ARGS...: 5 steps, with a CSV log and a trace.
run() {
  name=$1; shift
  "$lspo" train --model "$out/model" --data "$out/tok.bin" --steps 5 --batch $B --seq $T --check-freq 0 \
    --log "$out/$name.csv" --trace "$out/$name.trace" "$@" > "$out/$name.out" 2> "$out/$name.err" \
    || { echo "FAILED: lspo train $*"; tail -n 5 "$out/$name.err"; fail=1; return; }
}
# steady NAME COLUMN: the largest (smallest) value of a CSV column over steps
# 3..5, once StarPU has placed every tensor where it stays
steady() { awk -F, -v c="$2" 'NR > 3 { if ($c > m) m = $c } END { printf "%d", m }' "$out/$1.csv"; }
steady_min() { awk -F, -v c="$2" 'NR > 3 { if (m == "" || $c < m) m = $c } END { printf "%d", m }' "$out/$1.csv"; }
# volume NAME: the analytic bytes each way that `lspo train` prints, in bytes
volume() { sed -n 's/^offload volume per step (from the graph): device->host [0-9.]* MB (\([0-9]*\) B).*/\1/p' "$out/$1.out"; }

slack_h2d=$((8 * B * T + 4096))   # inputs and targets (int32), plus small scalars
slack_d2h=4096                    # losses and norms
for mode in native zero zero-bf16 lsp; do
  case $mode in
    zero-bf16) args="--mode zero --offload-dtype bf16" ;;
    lsp) args="--mode lsp --lsp-d 64 --lsp-r 8" ;;
    *) args="--mode $mode" ;;
  esac
  # shellcheck disable=SC2086
  run $mode $args --sched lspo
  [ -s "$out/$mode.csv" ] || continue
  v=$(volume $mode)
  lo_d=$(steady_min $mode 7) hi_d=$(steady $mode 7) lo_h=$(steady_min $mode 8) hi_h=$(steady $mode 8)
  echo "$mode: analytic $v B each way; steady steps d2h $lo_d..$hi_d B, h2d $lo_h..$hi_h B"
  check "$mode d2h = analytic + step outputs" "[ $lo_d -ge $v ] && [ $hi_d -le $((v + slack_d2h)) ]"
  check "$mode h2d = analytic + step inputs" "[ $lo_h -ge $v ] && [ $hi_h -le $((v + slack_h2d)) ]"
done
check "native moves no offload bytes" "[ $(volume native) -eq 0 ]"
check "zero with bf16 moves half of fp32's volume" "[ $(( $(volume zero) / 2 )) -eq $(volume zero-bf16) ]"
check "lsp moves 4 d^2 per matrix" "[ $(volume lsp) -eq $((16 * 4 * 64 * 64)) ]"

# The schedule of lsp under the lspo policy, from the trace summary of step 3.
summary=$out/lsp.trace/summary.txt
block=$(awk '/^step 3:/ { on = 1 } on && /^$/ { exit } on' "$summary")
gpu_busy=$(echo "$block" | sed -n 's/.*(cuda): busy \([0-9.]*\)%.*/\1/p' | head -n1)
hidden=$(echo "$block" | sed -n 's/.*hidden behind compute .* (\([0-9.]*\)% of fetch).*/\1/p' | head -n1)
echo "lsp, lspo policy, step 3: GPU busy ${gpu_busy:-?}%, transfers hidden ${hidden:-?}%"
check "lsp keeps the GPU busy" "awk 'BEGIN { exit !(\"${gpu_busy:-0}\" + 0 >= 85) }'"
check "lsp hides its transfers" "awk 'BEGIN { exit !(\"${hidden:-0}\" + 0 >= 50) }'"
zero_ms=$(awk -F, 'NR == 4 { print $5 }' "$out/zero.csv") lsp_ms=$(awk -F, 'NR == 4 { print $5 }' "$out/lsp.csv")
echo "step 3: zero $zero_ms ms, lsp $lsp_ms ms (simulated)"
check "lsp's step is shorter than zero's" "awk 'BEGIN { exit !(${lsp_ms:-1} < ${zero_ms:-0}) }'"
run lsp-dmdas --mode lsp --sched dmdas --lsp-d 64 --lsp-r 8
dmdas_ms=$(awk -F, 'NR == 4 { print $5 }' "$out/lsp-dmdas.csv")
# Printed, not asserted: on a model this small the two policies end within
# a few percent of each other, either way (bench/RESULTS.md has the 124M and
# 774M comparison).
echo "step 3 of lsp: lspo policy $lsp_ms ms, dmdas $dmdas_ms ms (simulated)"

# Gradient accumulation (issue 13): 2 micro-batches of B / 2 per step move
# what one batch of B moves: one offload per step, the same inputs and
# outputs in all; with activation checkpointing as well.
for mode in zero lsp; do
  case $mode in
    lsp) args="--mode lsp --lsp-d 64 --lsp-r 8" ;;
    *) args="--mode $mode" ;;
  esac
  # shellcheck disable=SC2086
  run accum-$mode $args --sched lspo --batch $((B / 2)) --grad-accum 2 --checkpoint-activations
  [ -s "$out/accum-$mode.csv" ] || continue
  v=$(volume accum-$mode)
  lo_d=$(steady_min accum-$mode 7) hi_d=$(steady accum-$mode 7) lo_h=$(steady_min accum-$mode 8) hi_h=$(steady accum-$mode 8)
  echo "$mode, --grad-accum 2 --checkpoint-activations: analytic $v B each way; steady steps d2h $lo_d..$hi_d B, h2d $lo_h..$hi_h B (batch $B: d2h $(steady_min $mode 7)..$(steady $mode 7) B, h2d $(steady_min $mode 8)..$(steady $mode 8) B)"
  check "$mode --grad-accum: the volume of one batch" "[ $v -eq $(volume $mode) ]"
  check "$mode --grad-accum: the bus bytes of one batch" "[ $lo_d -eq $(steady_min $mode 7) ] && [ $hi_d -eq $(steady $mode 7) ] && [ $lo_h -eq $(steady_min $mode 8) ] && [ $hi_h -eq $(steady $mode 8) ]"
  check "$mode --grad-accum d2h = one offload + step outputs" "[ $lo_d -ge $v ] && [ $hi_d -le $((v + slack_d2h)) ]"
  check "$mode --grad-accum h2d = one offload + step inputs" "[ $lo_h -ge $v ] && [ $hi_h -le $((v + slack_h2d)) ]"
  check "$mode --grad-accum has recompute tasks" "grep -q ',recompute,' '$out/accum-$mode.trace/tasks.csv'"
done
# Under a 64 MiB cap, zero with checkpointing keeps every activation it
# needs resident: only the offload and the step's inputs cross the bus
# (without it, activations are evicted and fetched again: printed).
run cap-ckpt --mode zero --gpu-mem 64 --checkpoint-activations
run cap-plain --mode zero --gpu-mem 64
v=$(volume cap-ckpt)
echo "zero, 64 MiB cap: checkpointing d2h $(steady cap-ckpt 7) h2d $(steady cap-ckpt 8) B, $(awk -F, 'NR == 4 { print $5 }' "$out/cap-ckpt.csv") ms; without d2h $(steady cap-plain 7) h2d $(steady cap-plain 8) B, $(awk -F, 'NR == 4 { print $5 }' "$out/cap-plain.csv") ms (simulated)"
check "zero, 64 MiB cap, checkpointing: no eviction" "[ $(steady cap-ckpt 7) -le $((v + slack_d2h)) ] && [ $(steady cap-ckpt 8) -le $((v + slack_h2d)) ]"

# A Llama-family model (grouped-query attention, untied head, (out, in)
# weights): zero and lsp move their analytic volume too; lsp compresses its
# seven maps per block.
"$lspo" init --family llama --vocab 256 --n-positions $T --n-embd 256 --n-layer 4 --n-head 4 --n-kv-head 2 \
  --intermediate 384 --out "$out/llama" > /dev/null 2>&1 || { echo "FAILED: llama init"; fail=1; }
for mode in zero lsp; do
  name=llama-$mode
  "$lspo" train --model "$out/llama" --data "$out/tok.bin" --steps 5 --batch $B --seq $T --check-freq 0 \
    --mode $mode --lsp-d 64 --lsp-r 8 --log "$out/$name.csv" > "$out/$name.out" 2> "$out/$name.err" \
    || { echo "FAILED: lspo train llama $mode"; tail -n 5 "$out/$name.err"; fail=1; continue; }
  v=$(volume $name)
  lo_d=$(steady_min $name 7) hi_d=$(steady $name 7) lo_h=$(steady_min $name 8) hi_h=$(steady $name 8)
  echo "$name: analytic $v B each way; steady steps d2h $lo_d..$hi_d B, h2d $lo_h..$hi_h B"
  check "$name d2h = analytic + step outputs" "[ $lo_d -ge $v ] && [ $hi_d -le $((v + slack_d2h)) ]"
  check "$name h2d = analytic + step inputs" "[ $lo_h -ge $v ] && [ $hi_h -le $((v + slack_h2d)) ]"
done
check "llama lsp moves 4 d^2 per map, 7 maps per block" "[ $(volume llama-lsp) -eq $((4 * 7 * 4 * 64 * 64)) ]"

# --dtype bf16 (issue 13): zero mode's weights go up as bf16 (half the fp32
# volume), its gradients down as fp32; the bus carries exactly that.
run zero-dtype-bf16 --mode zero --dtype bf16 --sched lspo
if [ -s "$out/zero-dtype-bf16.csv" ]; then
  vd=$(volume zero-dtype-bf16)
  vh=$(sed -n 's/^offload volume per step (from the graph): .* host->device [0-9.]* MB (\([0-9]*\) B).*/\1/p' \
    "$out/zero-dtype-bf16.out")
  lo_d=$(steady_min zero-dtype-bf16 7) hi_d=$(steady zero-dtype-bf16 7)
  lo_h=$(steady_min zero-dtype-bf16 8) hi_h=$(steady zero-dtype-bf16 8)
  echo "zero --dtype bf16: analytic $vd B down, $vh B up; steady steps d2h $lo_d..$hi_d B, h2d $lo_h..$hi_h B"
  check "zero --dtype bf16: weights up in bf16" "[ $((2 * vh)) -eq $(volume zero) ] && [ $vd -eq $(volume zero) ]"
  check "zero --dtype bf16 d2h = analytic + step outputs" "[ $lo_d -ge $vd ] && [ $hi_d -le $((vd + slack_d2h)) ]"
  check "zero --dtype bf16 h2d = analytic + step inputs" "[ $lo_h -ge $vh ] && [ $hi_h -le $((vh + slack_h2d)) ]"
fi
[ $fail -eq 0 ] && echo "test_sim: all checks passed"
exit $fail
