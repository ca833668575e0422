#!/bin/sh
# test_mpi.sh - data-parallel training over StarPU-MPI (issue 14): 2 ranks x
# batch 2 against 1 process x batch 4 for 5 steps in native, zero and lsp.
# The losses agree within 1e-5 (relative); the two replicas' parameters are
# bit-identical; the bytes each rank sends per step equal the ring
# all-reduce's analytic volume 2 (N-1)/N x payload, computed here from the
# model's shapes (lsp: G_hat (d, d) instead of each compressed (m, n)
# gradient), and StarPU-MPI's own count (STARPU_COMM_STATS) equals the run
# total lspo reports.  Resume on the same number of ranks continues bit for
# bit; another number of ranks is refused unless the global batch matches.
# A replica that diverges, a rank that dies and a rank that hangs end the
# job with an error within a bounded time.  Both ranks share the 2 cores: one CPU worker
# each, unbound.  Skips (77) in a build without StarPU-MPI or without mpirun.
set -u
[ "${LSPO_HAVE_MPI:-no}" = yes ] || { echo "built without StarPU-MPI: skipped"; exit 77; }
mpirun=${MPIRUN:-$(command -v mpirun)}
[ -n "$mpirun" ] && [ -x "$mpirun" ] || { echo "no mpirun: skipped"; exit 77; }
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/mpi"
rm -rf "$out"; mkdir -p "$out"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; fi; }

export STARPU_NCPU=1 STARPU_NCUDA=0 STARPU_WORKERS_NOBIND=1
# Open MPI: shared memory between the two ranks (no single-copy mechanism,
# which needs ptrace rights containers often lack), no binding.
# (MPI_EXEC=1 mpi ...) & makes $! mpirun's pid.
mpi() {
  np=$1; shift
  ${MPI_EXEC:+exec} "$mpirun" --allow-run-as-root --oversubscribe --bind-to none -np "$np" \
    --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
    -x STARPU_HOME -x STARPU_HOSTNAME -x STARPU_CALIBRATE -x STARPU_SILENT -x STARPU_FXT_TRACE \
    -x OPENBLAS_NUM_THREADS -x STARPU_NCPU -x STARPU_NCUDA -x STARPU_WORKERS_NOBIND \
    -x STARPU_COMM_STATS -x LSPO_DP_DUMP -x LSPO_DP_FAULT "$@"
}
export STARPU_COMM_STATS=0 LSPO_DP_DUMP= LSPO_DP_FAULT=
# Sanitizer build: Open MPI's plugins and libraries have no frame pointers
# and are unloaded at MPI_Finalize; with the slow unwinder and the plugins
# kept loaded, LeakSanitizer's stacks name them and tests/lsan.supp applies.
if [ -n "${ASAN_OPTIONS:-}" ]; then
  export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0" OMPI_MCA_mca_base_component_disable_dlclose=1
fi

i=0; while [ $i -lt 40 ]; do
  echo "Ranks sum their gradients; every replica takes the same step." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
V=256 P=32 C=32 L=2 D=8
"$lspo" init --vocab $V --n-positions $P --n-embd $C --n-layer $L --n-head 2 --seed 3 --out "$out/init" > /dev/null \
  || { echo "init failed"; exit 1; }
common="--model $out/init --data $out/tok.bin --seq 16 --lr 1e-3 --seed 5 --check-freq 3 --sched eager"

# What the ring must send per step and rank (N = 2: 2 (N-1)/N = 1 x payload):
# every gradient (native, zero), or, in lsp, G_hat (d, d) in place of each
# compressed block matrix (qkv C x 3C, attn_out C x C, fc C x 4C, mlp_out 4C x C).
nparams=$(( V * C + P * C + L * (2 * C + C * 3 * C + 3 * C + C * C + C + 2 * C + C * 4 * C + 4 * C + 4 * C * C + C) + 2 * C ))
mn=$(( L * (C * 3 * C + C * C + C * 4 * C + 4 * C * C) ))
dd=$(( L * 4 * D * D ))
dense_bytes=$(( 4 * nparams ))
lsp_bytes=$(( 4 * (nparams - mn + dd) ))

col() {   # CSV $1, column named $2: its values
  awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next } { print $c }' "$1"
}
same_losses() {   # CSV logs $1 $2: every step's loss within 1e-5 relative
  col "$1" loss > "$1.loss"; col "$2" loss > "$2.loss"
  paste -d, "$1.loss" "$2.loss" | awk -F, '{ n++; a = $1; b = $2; d = a - b; if (d < 0) d = -d;
    if (d > 1e-5 * (a < 0 ? -a : a)) { print "step " n ": " a " vs " b; bad = 1 } }
    END { exit (bad || n != 5) }'
}

for mode in native zero lsp; do
  extra=""; [ $mode = lsp ] && extra="--lsp-d $D --lsp-r 2"
  # shellcheck disable=SC2086
  "$lspo" train $common --mode $mode $extra --steps 5 --batch 4 --log "$out/$mode-1.csv" > "$out/$mode-1.out" 2>&1
  check "$mode: 1 process x batch 4 runs" "[ $? -eq 0 ]"
  # shellcheck disable=SC2086
  STARPU_COMM_STATS=1 LSPO_DP_DUMP="$out/$mode-params" mpi 2 "$lspo" train $common --mode $mode $extra --steps 5 \
    --batch 2 --log "$out/$mode-2.csv" --save "$out/$mode-save" > "$out/$mode-2.out" 2>&1
  check "$mode: 2 ranks x batch 2 run (mpirun exit 0)" "[ $? -eq 0 ]"
  check "$mode: the global batch is announced" "grep -q '^data parallel: 2 ranks x batch 2 = global batch 4' '$out/$mode-2.out'"
  check "$mode: one step line per step (rank 0 only)" "[ \$(grep -c '^step ' '$out/$mode-2.out') -eq 5 ]"
  check "$mode: losses equal within 1e-5" "same_losses '$out/$mode-1.csv' '$out/$mode-2.csv'"
  check "$mode: parameters bit-identical across ranks" \
    "[ -s '$out/$mode-params.rank0' ] && cmp -s '$out/$mode-params.rank0' '$out/$mode-params.rank1'"
  want=$dense_bytes; [ $mode = lsp ] && want=$lsp_bytes
  check "$mode: inter-rank bytes per step = 2 (N-1)/N x payload = $want" \
    "[ \"\$(col '$out/$mode-2.csv' bytes_ranks | sort -u)\" = '$want' ]"
  check "$mode: the summary states the analytic volume" \
    "grep -q '^inter-rank bytes sent by rank 0: $want B per training step (ring all-reduce of $want B: analytic 2 (N-1)/N x payload = $want B, N = 2)' '$out/$mode-2.out'"
  total=$(sed -n 's/.*; run total \([0-9]*\) B.*/\1/p' "$out/$mode-2.out")
  stats=$(sed -n 's/^\[starpu_comm_stats\]\[0\] TOTAL:[[:space:]]*\([0-9]*\)\..*/\1/p' "$out/$mode-2.out")
  check "$mode: StarPU-MPI counted what lspo reports ($stats B = $total B)" "[ -n '$total' ] && [ '$stats' = '$total' ]"
  check "$mode: rank 0 saved the checkpoint" "[ -s '$out/$mode-save/model.safetensors' ]"
done
# Gradient accumulation: each rank sums its K micro-batches, then the ring
# sums the ranks' (once per step): 2 ranks x batch 2 x 2 micro-batches
# against 1 process x batch 4 x 2 micro-batches (the same 8 rows a step),
# with the seeded random projectors (learning would amplify the summation
# order's last bits beyond 1e-5 within 5 steps).
"$lspo" train $common --check-freq 0 --mode lsp --lsp-d $D --lsp-r 2 --steps 5 --batch 4 --grad-accum 2 \
  --log "$out/accum-1.csv" > "$out/accum-1.out" 2>&1
check "accum: 1 process runs" "[ $? -eq 0 ]"
mpi 2 "$lspo" train $common --check-freq 0 --mode lsp --lsp-d $D --lsp-r 2 --steps 5 --batch 2 --grad-accum 2 \
  --log "$out/accum-2.csv" > "$out/accum-2.out" 2>&1
check "accum: 2 ranks run" "[ $? -eq 0 ]"
check "accum: losses equal within 1e-5" "same_losses '$out/accum-1.csv' '$out/accum-2.csv'"
check "accum: one reduction per step" "[ \"\$(col '$out/accum-2.csv' bytes_ranks | sort -u)\" = '$lsp_bytes' ]"

# --trace on 2 ranks: every rank traces (StarPU-MPI's FxT sync points are
# collective), rank 1 into TRACE/rank-1; the reductions are tasks of the
# `reduce` stage, one pack and one unpack per layer and step.
mpi 2 "$lspo" train $common --steps 2 --batch 2 --sched lspo --trace "$out/trace" > "$out/trace.out" 2>&1
check "--trace on 2 ranks" "[ $? -eq 0 ] && [ -s '$out/trace/tasks.csv' ] && [ -s '$out/trace/rank-1/tasks.csv' ]"
check "reduce tasks in the trace: a pack per layer (L + 2 buckets) and step" \
  "[ \$(grep -c 'bucket_pack:L[0-9]*:reduce' '$out/trace/tasks.csv') -eq $(( 2 * (L + 2) )) ]"

# lsp sends G_hat instead of G: d^2 / (m n) of zero's bytes for the compressed matrices
check "lsp/zero volume of the compressed matrices is d^2 / (m n)" \
  "[ \$(( $dense_bytes - $lsp_bytes )) -eq \$(( 4 * ($mn - $dd) )) ]"

# Resume: 3 steps on 2 ranks, then steps 4-5 on 2 ranks equal the
# uninterrupted run bit for bit; 1 process with batch 2 (global batch 2) is
# refused; 1 process with batch 4 (the same global batch) is accepted.
mpi 2 "$lspo" train $common --steps 3 --batch 2 --save "$out/res" --log "$out/res.csv" > "$out/res-a.out" 2>&1
check "resume: first part" "[ $? -eq 0 ]"
cp -r "$out/res" "$out/res1"
mpi 2 "$lspo" train $common --steps 5 --batch 2 --save "$out/res" --resume auto --log "$out/res.csv" \
  > "$out/res-b.out" 2>&1
check "resume on 2 ranks" "[ $? -eq 0 ] && grep -q '^resumed from .* at step 3' '$out/res-b.out'"
check "resumed run equals the uninterrupted one" "[ \"\$(col '$out/res.csv' loss)\" = \"\$(col '$out/native-2.csv' loss)\" ]"
"$lspo" train $common --steps 5 --batch 2 --save "$out/res1" --resume auto > "$out/res-c.out" 2>&1
rc=$?
check "resume with another global batch refused (exit 2)" \
  "[ $rc -eq 2 ] && grep -q 'option --batch differs from the checkpoint' '$out/res-c.out'"
"$lspo" train $common --steps 5 --batch 4 --save "$out/res1" --resume auto --log "$out/res1.csv" > "$out/res-d.out" 2>&1
check "resume on 1 process with the same global batch" "[ $? -eq 0 ] && grep -q '^resumed from' '$out/res-d.out'"

# A replica that diverges (rank 1's parameters one ulp off): an error at the
# next checksum, every rank ends, non-zero exit.
# steps FILE: step lines in FILE so far (0 before the launcher creates it)
steps() { if [ -f "$1" ]; then grep -c '^step ' "$1"; else echo 0; fi; }
# ends() PID SECONDS: waits at most SECONDS for PID; its exit status, or 200 (then killed)
ends() {
  k=0; while [ $k -lt $(( $2 * 5 )) ] && kill -0 "$1" 2>/dev/null; do sleep 0.2; k=$((k + 1)); done
  if kill -0 "$1" 2>/dev/null; then kill -9 "$1"; wait "$1"; return 200; fi
  wait "$1"
}
(MPI_EXEC=1 LSPO_DP_FAULT=diverge:1 mpi 2 "$lspo" train $common --steps 5 --batch 2 > "$out/diverge.out" 2>&1) &
ends $! 120; rc=$?
check "diverged replicas: an error, not a hang (exit $rc)" "[ $rc -ne 0 ] && [ $rc -ne 200 ]"
check "diverged replicas: the message names the ranks" \
  "grep -q 'after step 3 the parameters differ across ranks: checksum [0-9a-f]* on rank 0, [0-9a-f]* on rank 1' '$out/diverge.out'"

# SIGTERM to rank 1 alone: the ranks agree to stop after the same step,
# rank 0 publishes a checkpoint, every rank exits 75; resume continues it.
(MPI_EXEC=1 mpi 2 "$lspo" train $common --steps 1000000 --batch 2 --save "$out/sig" > "$out/sig.out" 2>&1) &
pid=$!
n=0; while [ $n -lt 240 ] && [ "$(steps "$out/sig.out")" -lt 2 ]; do sleep 0.5; n=$((n + 1)); done
victim=$(ps -o pid=,args= --ppid $pid | awk '/lspo/ { p = $1 } END { print p }')
[ -n "$victim" ] && kill -TERM "$victim"
ends $pid 120; rc=$?
check "SIGTERM to one rank: exit 75 with a checkpoint" \
  "[ $rc -eq 75 ] && grep -q '^lspo: SIGTERM: stopped after step [0-9]*; checkpoint .*published' '$out/sig.out' && [ -s '$out/sig/model.safetensors' ]"
at=$(sed -n 's/^saved .* (step \([0-9]*\))$/\1/p' "$out/sig.out" | tail -n 1)
mpi 2 "$lspo" train $common --steps $((at + 1)) --batch 2 --save "$out/sig" --resume auto > "$out/sig2.out" 2>&1
check "resumed after the signal" "[ $? -eq 0 ] && grep -q '^resumed from .* at step $at' '$out/sig2.out'"

# A rank that dies: the other ends with an error within 60 s.
(MPI_EXEC=1 mpi 2 "$lspo" train $common --steps 1000000 --batch 2 > "$out/death.out" 2>&1) &
pid=$!
n=0; while [ $n -lt 120 ] && [ "$(steps "$out/death.out")" -lt 2 ]; do sleep 0.5; n=$((n + 1)); done
victim=$(ps -o pid=,args= --ppid $pid | awk '/lspo/ { p = $1 } END { print p }')
if [ -n "$victim" ]; then
  kill -9 "$victim"
  t0=$(date +%s)
  ends $pid 60; rc=$?
  t1=$(date +%s)
  check "a rank killed: the job ends with an error (exit $rc) within 60 s ($((t1 - t0)) s)" \
    "[ $rc -ne 0 ] && [ $rc -ne 200 ]"
else
  check "a rank to kill was found" "false"
  ends $pid 1
fi

# A rank that hangs (SIGSTOP): the launcher sees nothing; --rank-timeout 5
# makes the other rank stop the job with an error.
(MPI_EXEC=1 mpi 2 "$lspo" train $common --steps 1000000 --batch 2 --rank-timeout 5 > "$out/hang.out" 2>&1) &
pid=$!
n=0; while [ $n -lt 240 ] && [ "$(steps "$out/hang.out")" -lt 2 ]; do sleep 0.5; n=$((n + 1)); done
victim=$(ps -o pid=,args= --ppid $pid | awk '/lspo/ { p = $1 } END { print p }')
if [ -n "$victim" ]; then
  kill -STOP "$victim"
  t0=$(date +%s)
  ends $pid 90; rc=$?
  t1=$(date +%s)
  kill -9 "$victim" 2>/dev/null
  check "a rank hung: the job ends with an error (exit $rc) within 90 s ($((t1 - t0)) s)" \
    "[ $rc -ne 0 ] && [ $rc -ne 200 ] && grep -q 'made no progress for 5 s (--rank-timeout)' '$out/hang.out'"
else
  check "a rank to stop was found" "false"
  ends $pid 1
fi

[ $fail -eq 0 ] && echo "test_mpi: all checks passed"
exit $fail
