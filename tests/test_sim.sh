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
#     one batch's volume per step, as without;
#   - a projector check keeps the GPU busy (its learning chains stay there);
#   - on a 124M-shaped model, the lspo policy's step is at most dmdas's in
#     lsp and zero mode, under a memory cap and without one (sched_mem_vs_dmdas);
#     native just over a cap sends only part of its updates home (native_over_cap);
#   - GPT-2 124M lsp at B 4 fits 4 GiB once dead activations are dropped
#     (sim_124m_drop);
#   - a Llama 7B whose weights stream through 8 GiB runs applies on the host
#     rather than writing weights back (sim_7b_apply);
#   - GPT-2 1.5B lsp in 4 GiB gathers the embedding on the host and has no
#     step stalled on the table's upload (sim_15b_embedding).
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
# --- Memory (issue 13) --------------------------------------------------------
# fp NAME FIELD ARGS...: a field of `lspo plan`'s "footprint bytes:" line
fp() { name=$1 f=$2; shift 2; "$lspo" plan "$@" > "$out/$name.plan" 2>&1; sed -n "s/^footprint bytes:.* $f \([0-9]*\).*/\1/p" "$out/$name.plan"; }
# Without a cap StarPU frees nothing during a run, so the accelerator's peak
# is every handle its tasks touched: the analytic footprint as StarPU's
# allocator counts it (allocations up to 4 MiB from 32 MiB chunks).
for run in "native gpt2 --mode native" "zero gpt2 --mode zero" "zero-bf16 gpt2 --mode zero --offload-dtype bf16" \
           "lsp gpt2 --mode lsp" "llama-zero llama --mode zero" "llama-lsp llama --mode lsp" \
           "zero-dtype-bf16 gpt2 --mode zero --dtype bf16"; do
  set -- $run
  name=$1 dir=model; [ "$2" = llama ] && dir=llama; shift 2
  [ -s "$out/$name.csv" ] || continue
  want=$(fp "$name" allocated --model "$out/$dir" --batch $B --seq $T --lsp-d 64 --lsp-r 8 "$@")
  peak=$(awk -F, 'NR == 4 { print $9 }' "$out/$name.csv")
  ev=$(awk -F, 'NR > 1 { s += $10 + $11 } END { print s + 0 }' "$out/$name.csv")
  echo "$name: accelerator peak ${peak:-?} B, footprint as allocated ${want:-?} B (exact $(sed -n 's/.* device \([0-9]*\).*/\1/p' "$out/$name.plan") B), evicted+refetched $ev B"
  check "$name: peak = footprint within 5%" \
    "awk 'BEGIN { p = ${peak:-0}; f = ${want:-1}; d = p - f; if (d < 0) d = -d; exit !(p > 0 && d <= 0.05 * f) }'"
  check "$name: nothing evicted without a cap" "[ \"$ev\" = 0 ]"
done

# Under a cap the model does not fit (64 MiB; native needs 128 as allocated),
# the memory-aware lspo policy is never slower than dmdas (median of steps
# 3..6), and StarPU's evictions show in the log.
cap=64
median() { awk -F, 'NR >= 4 { print $5 }' "$out/$1.csv" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for mode in native zero lsp; do
  for pol in lspo dmdas; do
    name=cap-$mode-$pol
    "$lspo" train --model "$out/model" --data "$out/tok.bin" --steps 6 --batch $B --seq $T --check-freq 0 \
      --mode $mode --lsp-d 64 --lsp-r 8 --gpu-mem $cap --sched $pol --log "$out/$name.csv" > "$out/$name.out" 2>&1 \
      || { echo "FAILED: $name"; tail -n 5 "$out/$name.out"; fail=1; }
  done
  lm=$(median cap-$mode-lspo) dm=$(median cap-$mode-dmdas)
  ev_l=$(awk -F, 'NR >= 4 { s += $10 } END { print s + 0 }' "$out/cap-$mode-lspo.csv")
  ev_d=$(awk -F, 'NR >= 4 { s += $10 } END { print s + 0 }' "$out/cap-$mode-dmdas.csv")
  echo "$mode under $cap MiB: lspo ${lm:-?} ms, dmdas ${dm:-?} ms (simulated); evicted in steps 3..6: lspo $ev_l B, dmdas $ev_d B"
  check "$mode under $cap MiB: lspo <= 1.0x dmdas" "awk 'BEGIN { exit !(${lm:-1} + 0 > 0 && ${lm:-1} <= ${dm:-0}) }'"
done
check "native under $cap MiB: evictions reported" "[ \$(awk -F, 'NR > 1 { s += \$10 } END { print s + 0 }' '$out/cap-native-dmdas.csv') -gt 0 ]"
check "native under $cap MiB: summary of step lines" "grep -q '^step     6 .* | peak 64.0 MiB (evicted ' '$out/cap-native-dmdas.out'"

# --- The memory-aware lspo policy against dmdas (issue 13, item 5) ------------
# sched_mem_vs_dmdas: a 124M-shaped model scaled down (12 layers, GPT-2's
# vocabulary, so that the logits and the embedding dominate memory as they
# do for 124M; n_embd 192, B 4 x T 128), lsp and zero, each policy, under a
# cap below the footprint (316 MiB: lsp needs 405 as allocated, zero 332)
# and without one.  Median step of steps 3..8.  Asserted: lspo's step is at
# most 1.0x dmdas's under the cap, and not longer without it.  A run StarPU
# cannot finish (its eviction livelock when a cap is too tight) is killed
# after 120 s and fails the check.
sched_mem_vs_dmdas() {
  m=$out/mem-sched-model
  med() { awk -F, 'NR >= 4 { print $5 }' "$out/$1.csv" | sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  "$lspo" init --vocab 50257 --n-positions 128 --n-embd 192 --n-layer 12 --n-head 3 --out "$m" > /dev/null 2>&1 \
    || { echo "FAILED: init of the 124M-shaped model"; fail=1; return; }
  for mode in lsp zero; do
    for cap in 316 0; do
      for pol in lspo dmdas; do
        name=memsched-$mode-$cap-$pol
        capopt=""; [ $cap -gt 0 ] && capopt="--gpu-mem $cap"
        # shellcheck disable=SC2086
        timeout -s KILL 120 "$lspo" train --model "$m" --data "$out/tok.bin" --steps 8 --batch 4 --seq 128 \
          --check-freq 0 --mode $mode --lsp-d 64 --lsp-r 8 $capopt --sched $pol --log "$out/$name.csv" \
          > "$out/$name.out" 2>&1 || { echo "FAILED: $name (rc $?)"; tail -n 3 "$out/$name.out"; fail=1; }
      done
      l=$(med memsched-$mode-$cap-lspo) d=$(med memsched-$mode-$cap-dmdas)
      what="under $cap MiB"; [ $cap -eq 0 ] && what="without a cap"
      echo "124M-shaped, $mode $what: lspo ${l:-?} ms, dmdas ${d:-?} ms (simulated, median of steps 3..8)"
      check "124M-shaped, $mode $what: lspo <= 1.0x dmdas" "awk 'BEGIN { exit !(${l:-0} + 0 > 0 && ${l:-1} <= ${d:-0}) }'"
    done
  done
}
sched_mem_vs_dmdas

# Native just over a cap (the 124M-shaped model needs 437 MiB as allocated;
# cap 400): the policy sends home only as many updates as the missing
# memory calls for, so each step moves some of the gradients down, not all
# (sending all of them made a Llama 7B 2.3x slower than dmdas), and its
# step is at most dmdas's.
native_over_cap() {
  m=$out/mem-sched-model
  "$lspo" plan --model "$m" --mode native --batch 4 --seq 128 > "$out/native-over.plan" 2>&1
  grads=$(sed -n 's/^footprint bytes:.* gradients \([0-9]*\).*/\1/p' "$out/native-over.plan")
  for pol in lspo dmdas; do
    timeout -s KILL 120 "$lspo" train --model "$m" --data "$out/tok.bin" --steps 8 --batch 4 --seq 128 \
      --check-freq 0 --mode native --gpu-mem 400 --sched $pol --log "$out/native-over-$pol.csv" \
      > "$out/native-over-$pol.out" 2>&1 || { echo "FAILED: native-over-$pol (rc $?)"; tail -n 3 "$out/native-over-$pol.out"; fail=1; }
  done
  med() { awk -F, 'NR >= 4 { print $5 }' "$out/$1.csv" | sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  l=$(med native-over-lspo) d=$(med native-over-dmdas)
  d2h=$(awk -F, 'NR == 9 { print $7 }' "$out/native-over-lspo.csv")
  echo "124M-shaped native under 400 MiB: lspo ${l:-?} ms, dmdas ${d:-?} ms; lspo's step 8 sends ${d2h:-?} B down, all gradients ${grads:-?} B (simulated)"
  check "native under 400 MiB: some updates go home, not all" "[ ${d2h:-0} -gt 0 ] && [ ${d2h:-0} -lt ${grads:-0} ]"
  check "native under 400 MiB: lspo <= 1.0x dmdas" "awk 'BEGIN { exit !(${l:-0} + 0 > 0 && ${l:-1} <= ${d:-0}) }'"
}
native_over_cap

# GPT-2 774M, B 4 x T 1024 (config.json only: `lspo plan` reads nothing else):
# in fp32 no mode fits 4 GiB (issue 13's starting point); with bf16 and
# activation checkpointing alone lsp does not fit either at this batch (its
# plan is printed); sim_774m below runs the configuration that does.
mkdir -p "$out/774M"
printf '{"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 1280, "n_layer": 36, "n_head": 20}\n' \
  > "$out/774M/config.json"
for m in native zero lsp; do
  "$lspo" plan --model "$out/774M" --mode $m --batch 4 --seq 1024 --lsp-d 512 --gpu-mem 4096 > "$out/774M-$m.plan" 2>&1
  check "774M $m fp32 does not fit 4 GiB" "grep -q '^fits: no' '$out/774M-$m.plan'"
done
"$lspo" plan --model "$out/774M" --mode lsp --batch 4 --seq 1024 --lsp-d 512 --dtype bf16 --checkpoint-activations \
  --gpu-mem 4096 > "$out/774M-small.plan" 2>&1
echo "774M lsp, bf16, checkpointing, 4 GiB (analytic): $(grep '^fits:' "$out/774M-small.plan")"
# --- GPT-2 774M in 4 GiB (issue 13; tests/test_sim.sh's own block, sim_774m) -----
# lsp with --dtype bf16, activation checkpointing and --bf16-update stochastic
# (no fp32 master on the accelerator) fits a 4 GiB cap: `lspo train
# --random-init` on the config alone (a simulated run reserves the host slabs
# but never touches them), B 1 x T 1024 (the model's full context; the batch
# that fits with room: 2814 MiB planned; B 4 would add 1.2 GB of lsp's A
# alone, A = P^T X^T kept per map).  Steps 3..5: nothing evicted or
# refetched, the bus carries the analytic volume plus the step's inputs and
# outputs (tokens and targets up, 8 B per position; losses down, 4 B), the
# accelerator's peak is the plan's, and the step is at most half of zero's
# under the same cap (zero with bf16 and checkpointing does not fit: 4 B of
# gradient per parameter alone is 2.9 GiB; it evicts).  lsp's median step of
# steps 3..5 under the lspo policy is at most dmdas's in the same run.
sim_774m() {
  d=$out/774M B7=1 T7=1024
  args="--model $d --random-init --data $out/tok.bin --steps 5 --batch $B7 --seq $T7 --check-freq 0 --dtype bf16 \
    --checkpoint-activations --gpu-mem 4096 --sched lspo"
  plan=$("$lspo" plan --model "$d" --mode lsp --batch $B7 --seq $T7 --dtype bf16 --bf16-update stochastic \
    --checkpoint-activations --gpu-mem 4096)
  echo "774M lsp, bf16 (stochastic), checkpointing, B $B7 x T $T7, 4 GiB (analytic): $(echo "$plan" | grep '^fits:')"
  check "774M lsp --bf16-update stochastic fits 4 GiB (plan)" "echo \"\$plan\" | grep -q '^fits: yes'"
  want=$(echo "$plan" | sed -n 's/^footprint bytes:.* allocated \([0-9]*\).*/\1/p')
  for m in lsp zero lsp-dmdas; do
    extra="--mode $m"; [ $m = lsp ] && extra="--mode lsp --bf16-update stochastic"
    [ $m = lsp-dmdas ] && extra="--mode lsp --bf16-update stochastic --sched dmdas"
    tm=""   # wall time and resident memory, where GNU time exists
    [ -x /usr/bin/time ] && tm="/usr/bin/time -f %es,%MKiB -o $out/774M-$m.time"
    # shellcheck disable=SC2086
    $tm "$lspo" train $args $extra --log "$out/774M-$m.csv" > "$out/774M-$m.out" 2> "$out/774M-$m.err" \
      || { echo "FAILED: 774M $m: lspo train"; tail -n 5 "$out/774M-$m.err"; fail=1; return; }
    [ -n "$tm" ] && echo "774M $m: wall time, max RSS: $(tail -n 1 "$out/774M-$m.time")"
  done
  v=$(volume 774M-lsp)
  lo_d=$(steady_min 774M-lsp 7) hi_d=$(steady 774M-lsp 7) lo_h=$(steady_min 774M-lsp 8) hi_h=$(steady 774M-lsp 8)
  ev=$(awk -F, 'NR > 3 { s += $10 + $11 } END { print s + 0 }' "$out/774M-lsp.csv")
  # (awk's %d stops at 2^31: the peak and times are printed as they are)
  peak=$(awk -F, 'NR == 4 { print $9 }' "$out/774M-lsp.csv")
  lsp_ms=$(awk -F, 'NR > 3 && $5 > m { m = $5 } END { print m + 0 }' "$out/774M-lsp.csv")
  zero_ms=$(awk -F, 'NR > 3 && (m == "" || $5 < m) { m = $5 } END { print m + 0 }' "$out/774M-zero.csv")
  zero_ev=$(awk -F, 'NR > 3 { s += $10 } END { print s + 0 }' "$out/774M-zero.csv")
  echo "774M lsp: analytic $v B each way; steps 3..5 d2h $lo_d..$hi_d B, h2d $lo_h..$hi_h B, evicted+refetched $ev B, peak $peak B (plan $want B); step at most $lsp_ms ms, zero at least $zero_ms ms (evicted $zero_ev B in steps 3..5; simulated)"
  check "774M lsp 4 GiB: no eviction" "[ \"$ev\" = 0 ]"
  check "774M lsp 4 GiB: d2h = analytic + step outputs" "[ $lo_d -ge $v ] && [ $hi_d -le $((v + 4 * B7 * T7 + 4096)) ]"
  check "774M lsp 4 GiB: h2d = analytic + step inputs" "[ $lo_h -ge $v ] && [ $hi_h -le $((v + 8 * B7 * T7 + 4096)) ]"
  check "774M lsp 4 GiB: peak = plan within 5%" \
    "awk 'BEGIN { p = ${peak:-0}; f = ${want:-1}; d = p - f; if (d < 0) d = -d; exit !(p > 0 && d <= 0.05 * f) }'"
  check "774M 4 GiB: lsp's step <= 0.5 x zero's" "awk 'BEGIN { exit !(${lsp_ms:-1} > 0 && ${lsp_ms:-1} <= 0.5 * ${zero_ms:-0}) }'"
  l=$(median 774M-lsp) dm=$(median 774M-lsp-dmdas)
  echo "774M lsp 4 GiB: lspo policy ${l:-?} ms, dmdas ${dm:-?} ms (median of steps 3..5; simulated)"
  check "774M lsp 4 GiB: lspo <= 1.0x dmdas" "awk 'BEGIN { exit !(${l:-1} + 0 > 0 && ${l:-1} <= ${dm:-0}) }'"
}
sim_774m

# --- GPT-2 124M with --dtype bf16: peak = plan (issue 13; sim_124m_bf16) -------
# The small model above hides an fp32 copy of its parameters (13 MB) in the
# slack of StarPU's 32 MiB chunks; at 124M shapes (config.json alone, --random-init, B 1 x T 1024, no cap) each
# mode's accelerator peak at step 3 equals `lspo plan`'s footprint as
# allocated within 5%, for --dtype bf16 with fp32 masters, with stochastic
# rounding (native and lsp; zero keeps its masters on the host) and with
# activation checkpointing.  zero must not hold the fp32 masters there: they
# would add 4 bytes per parameter (476 MiB, 40% over its 1194.5 MiB).
sim_124m_bf16() {
  d=$out/124M
  mkdir -p "$d"
  printf '{"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, %s}\n' \
    '"n_head": 12' > "$d/config.json"
  for opts in "zero" "zero --checkpoint-activations" "native" "native --bf16-update stochastic" "lsp" \
              "lsp --bf16-update stochastic"; do
    set -- $opts
    m=$1; shift
    name=124M-$m$(echo "$*" | sed 's/--bf16-update stochastic/-sr/; s/--checkpoint-activations/-ckpt/; s/ //g')
    # shellcheck disable=SC2086
    want=$("$lspo" plan --model "$d" --mode $m --batch 1 --seq 1024 --dtype bf16 "$@" 2>&1 \
      | sed -n 's/^footprint bytes:.* allocated \([0-9]*\).*/\1/p')
    # shellcheck disable=SC2086
    "$lspo" train --model "$d" --random-init --data "$out/tok.bin" --steps 3 --batch 1 --seq 1024 --check-freq 0 \
      --mode $m --dtype bf16 "$@" --log "$out/$name.csv" > "$out/$name.out" 2> "$out/$name.err" \
      || { echo "FAILED: $name: lspo train"; tail -n 5 "$out/$name.err"; fail=1; continue; }
    peak=$(awk -F, 'NR == 4 { print $9 }' "$out/$name.csv")
    ev=$(awk -F, 'NR > 1 { s += $10 + $11 } END { print s + 0 }' "$out/$name.csv")
    echo "$name (bf16): accelerator peak ${peak:-?} B, plan as allocated ${want:-?} B, evicted+refetched $ev B"
    check "$name bf16: peak = plan within 5%" \
      "awk 'BEGIN { p = ${peak:-0}; f = ${want:-1}; d = p - f; if (d < 0) d = -d; exit !(p > 0 && d <= 0.05 * f) }'"
    check "$name bf16: nothing evicted without a cap" "[ \"$ev\" = 0 ]"
  done
}
sim_124m_bf16

# --- Dead activations dropped (issue 13; sim_124m_drop) ------------------------
# GPT-2 124M lsp fp32, B 4 x T 1024 under 4 GiB: its first step overflows
# (activations written back and fetched again: evicted), so the engine drops
# each block's activations after their last reader from step 2 on
# (engine/model.c, model_acts_dead); steps 3..5 then evict nothing and the
# bus carries lsp's analytic volume plus the step's inputs and outputs under
# the lspo policy; no eviction under dmdas either, and lspo's median step is
# at most dmdas's.
sim_124m_drop() {
  d=$out/124M
  for pol in lspo dmdas; do
    "$lspo" train --model "$d" --random-init --data "$out/tok.bin" --steps 5 --batch 4 --seq 1024 --check-freq 0 \
      --mode lsp --lsp-d 512 --lsp-r 8 --gpu-mem 4096 --sched $pol --log "$out/drop-$pol.csv" \
      > "$out/drop-$pol.out" 2> "$out/drop-$pol.err" \
      || { echo "FAILED: 124M drop $pol: lspo train"; tail -n 5 "$out/drop-$pol.err"; fail=1; return; }
    v=$(volume drop-$pol)
    ev1=$(awk -F, 'NR == 2 { print $10 + 0 }' "$out/drop-$pol.csv")
    ev=$(awk -F, 'NR > 3 { s += $10 + $11 } END { print s + 0 }' "$out/drop-$pol.csv")
    hi_d=$(steady drop-$pol 7) hi_h=$(steady drop-$pol 8)
    echo "124M lsp B 4 4 GiB, $pol: step 1 evicted $ev1 B; steps 3..5 evicted+refetched $ev B, d2h <= $hi_d B, h2d <= $hi_h B (analytic $v B; simulated)"
    check "124M lsp B 4 4 GiB, $pol: step 1 overflows" "[ ${ev1:-0} -gt 0 ]"
    check "124M lsp B 4 4 GiB, $pol: no eviction once dead activations are dropped" "[ \"$ev\" = 0 ]"
    # (dmdas places some dense work on CPU workers: its bus carries 20 MB more up)
    [ $pol = lspo ] && check "124M lsp B 4 4 GiB, lspo: bus = analytic + step inputs and outputs" \
      "[ $hi_d -le $((v + 16 * 1024 + 4096)) ] && [ $hi_h -le $((v + 32 * 1024 + 4096)) ]"
  done
  l=$(median drop-lspo) dm=$(median drop-dmdas)
  echo "124M lsp B 4 4 GiB: lspo ${l:-?} ms, dmdas ${dm:-?} ms (median of steps 3..5; simulated)"
  check "124M lsp B 4 4 GiB: lspo <= 1.0x dmdas" "awk 'BEGIN { exit !(${l:-1} + 0 > 0 && ${l:-1} <= ${dm:-0}) }'"
}
sim_124m_drop

# small_lsp_pair NAME DIR STEPS CAP_MIB: the model of config DIR in lsp mode
# with the small-card options (bf16, stochastic rounding, checkpointing),
# B 1 x T 1024, under the cap, traced, once under lspo and once under dmdas:
# $out/NAME-POLICY.csv and .trace.
small_lsp_pair() {
  for pol in lspo dmdas; do
    "$lspo" train --model "$2" --random-init --data "$out/tok.bin" --steps "$3" --batch 1 --seq 1024 --check-freq 0 \
      --mode lsp --lsp-d 512 --lsp-r 8 --dtype bf16 --bf16-update stochastic --checkpoint-activations \
      --gpu-mem "$4" --sched $pol --log "$out/$1-$pol.csv" --trace "$out/$1-$pol.trace" \
      > "$out/$1-$pol.out" 2> "$out/$1-$pol.err" \
      || { echo "FAILED: $1 lsp $4 MiB $pol: lspo train"; tail -n 5 "$out/$1-$pol.err"; fail=1; return 1; }
  done
}

# --- Applies on the host where weights stream (issue 13; sim_7b_apply) --------
# A Llama 7B (config.json alone, --random-init) in lsp mode with bf16,
# stochastic rounding and checkpointing, B 1 x T 1024, under 8 GiB: its
# 12.5 GiB of weights stream through the accelerator.  An apply whose weight
# the lspo policy's plan releases anyway runs on a CPU worker, where the
# weight is valid, instead of leaving a dirty copy to be written back
# (sched_lspo_mem.c, lspo_sched_mem_apply_home).  Steps 3..6: some applies
# ran on CPU workers, lspo's bus carries less than half of dmdas's down, and
# lspo's median step is at most dmdas's.
sim_7b_apply() {
  d=$out/llama-7B
  mkdir -p "$d"
  printf '{"model_type": "llama", "vocab_size": 32000, "max_position_embeddings": 4096, "hidden_size": 4096, %s}\n' \
    '"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 11008, "rms_norm_eps": 1e-5, "tie_word_embeddings": false' \
    > "$d/config.json"
  small_lsp_pair 7B "$d" 6 8192 || return
  home=$(awk -F, '$1 >= 3 && $4 == "apply" && $6 == "cpu"' "$out/7B-lspo.trace/tasks.csv" | wc -l)
  all=$(awk -F, '$1 >= 3 && $4 == "apply"' "$out/7B-lspo.trace/tasks.csv" | wc -l)
  d2h_l=$(awk -F, 'NR > 3 { s += $7 } END { printf "%.0f", s }' "$out/7B-lspo.csv")
  d2h_d=$(awk -F, 'NR > 3 { s += $7 } END { printf "%.0f", s }' "$out/7B-dmdas.csv")
  l=$(median 7B-lspo) dm=$(median 7B-dmdas)
  echo "7B lsp 8 GiB: $home of $all applies on the host (steps 3..6); d2h lspo $d2h_l B, dmdas $d2h_d B; lspo ${l:-?} ms, dmdas ${dm:-?} ms (median of steps 3..6; simulated)"
  check "7B lsp 8 GiB: some applies on the host" "[ ${home:-0} -gt 0 ]"
  check "7B lsp 8 GiB: lspo's d2h < half of dmdas's" "awk 'BEGIN { exit !(${d2h_l:-1} > 0 && 2 * ${d2h_l:-1} < ${d2h_d:-0}) }'"
  check "7B lsp 8 GiB: lspo <= 1.0x dmdas" "awk 'BEGIN { exit !(${l:-1} + 0 > 0 && ${l:-1} <= ${dm:-0}) }'"
}
sim_7b_apply

# --- The embedding's table at the step's end (issue 13; sim_15b_embedding) ---
# GPT-2 1.5B (config.json alone, --random-init) in lsp mode with bf16,
# stochastic rounding and checkpointing, B 1 x T 1024, under 4 GiB.  The host's
# AdamW rewrites the 161 MB table (tied to the head) at the end of each step;
# under the lspo policy the next step's embedding forward, a gather, runs on
# the host and the table's upload for the head is prefetched meanwhile
# (sched_lspo_mem.c, lspo_sched_mem_on_host and _prefetch_later): on the
# accelerator the forward waited for the upload, longer when the memory had
# first to be written back (48 ms instead of 17, a step 70 ms slower, in about
# half the runs).  Steps 3..8: the forward ran on CPU workers in most steps
# (on the accelerator where the memory had room for the table), lspo's median
# step is at most dmdas's, and its slowest step of 4..8 is within 2% of
# dmdas's slowest (a stalled step was 10% slower).
sim_15b_embedding() {
  d=$out/1.5B
  mkdir -p "$d"
  printf '{"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 1600, "n_layer": 48, "n_head": 25}\n' \
    > "$d/config.json"
  small_lsp_pair 1.5B "$d" 8 4096 || return
  fwd=$(awk -F, '$1 >= 3 && $2 ~ /^encoder:/ && $4 == "fwd"' "$out/1.5B-lspo.trace/tasks.csv" | wc -l)
  host=$(awk -F, '$1 >= 3 && $2 ~ /^encoder:/ && $4 == "fwd" && $6 == "cpu"' "$out/1.5B-lspo.trace/tasks.csv" | wc -l)
  slowest() { awk -F, 'NR >= 5 && $5 > m { m = $5 } END { print m + 0 }' "$out/$1.csv"; }
  l=$(median 1.5B-lspo) dm=$(median 1.5B-dmdas) lmax=$(slowest 1.5B-lspo) dmax=$(slowest 1.5B-dmdas)
  echo "1.5B lsp 4 GiB: $host of $fwd embedding forwards on the host (steps 3..8); lspo ${l:-?} ms (slowest of 4..8: $lmax), dmdas ${dm:-?} ms ($dmax) (median of steps 3..8; simulated)"
  check "1.5B lsp 4 GiB: the embedding's forward mostly on the host" "[ ${fwd:-0} -gt 0 ] && [ $((2 * ${host:-0})) -gt ${fwd:-0} ]"
  check "1.5B lsp 4 GiB: lspo <= 1.0x dmdas" "awk 'BEGIN { exit !(${l:-1} + 0 > 0 && ${l:-1} <= ${dm:-0}) }'"
  check "1.5B lsp 4 GiB: no lspo step stalls past dmdas's slowest" "awk 'BEGIN { exit !(${lmax:-1} + 0 > 0 && ${lmax:-1} <= 1.02 * ${dmax:-0}) }'"
}
sim_15b_embedding

# Projector checks as tasks (issue 12): a check's learning chains stay on the
# GPU, which is busy for most of the check (the calibration passes aside).
run lsp-check --mode lsp --lsp-d 64 --lsp-r 8 --steps 8 --check-freq 4 --sched lspo
if [ -s "$out/lsp-check.trace/tasks.csv" ]; then
  busy=$(python3 "$top/bench/idle-share" "$out/lsp-check.trace/tasks.csv" \
    | sed -n 's/.*before step 5:.*cuda busy \([0-9]*\) %.*/\1/p')
  echo "lsp check before step 5: GPU busy ${busy:-?} %"
  check "lsp check keeps the GPU busy (>= 50 %)" "[ '${busy:-0}' -ge 50 ]"
fi
[ $fail -eq 0 ] && echo "test_sim: all checks passed"
exit $fail
