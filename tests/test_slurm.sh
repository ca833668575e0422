#!/bin/sh
# test_slurm.sh - the example job script under a real Slurm: this test starts
# munged, slurmctld and slurmd as a private single-node cluster (its own key,
# socket, ports, spool and state under tests/out; SlurmUser=root,
# proctrack/linuxproc, task/none, select/cons_tres, CPUs=2), submits
# examples/slurm/finetune-cpu.sbatch, sends USR1 to the batch shell as
# --signal=B:USR1@N would (scancel -b -s USR1), and checks that lspo saves
# and exits 75, the script requeues the job, the requeued job resumes to the
# end with the final weights of an uninterrupted run, and no lspo is left
# running outside the job.  Daemons are stopped by their PIDs.  Needs root
# and Debian's slurm-wlm and munge (scripts/install-deps --with-slurm
# installs them); skipped (77) only when they cannot be installed.
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/slurm"
top="$LSPO_SRCDIR"
[ "$(id -u)" = 0 ] || { echo "skip: the private Slurm runs its daemons as root"; exit 77; }
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  "$top/scripts/install-deps" --with-slurm > /dev/null 2>&1 || true
  command -v slurmctld > /dev/null && command -v munged > /dev/null \
    || { echo "skip: slurm-wlm and munge cannot be installed here"; exit 77; }
fi
rm -rf "$out"; mkdir -p "$out"
out=$(cd "$out" && pwd)
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; fi; }

pids=""
stop() {
  for p in $pids; do kill "$p" 2>/dev/null; done
  for p in $pids; do wait "$p" 2>/dev/null; done
  pids=""
}
trap stop EXIT
trap 'stop; exit 1' INT TERM

# --- a private cluster -----------------------------------------------------------
host=$(hostname -s)
mkdir -p "$out/munge" "$out/state" "$out/spool" "$out/log" "$out/etc" "$out/work"
chmod 711 "$out/munge"
dd if=/dev/urandom of="$out/munge/munge.key" bs=1024 count=1 2> /dev/null
chmod 400 "$out/munge/munge.key"
munged -F -f --key-file="$out/munge/munge.key" --socket="$out/munge/sock" --pid-file="$out/munge/pid" \
  --log-file="$out/log/munged.log" --seed-file="$out/munge/seed" > "$out/log/munged.out" 2>&1 &
pids="$pids $!"
# free ports: 20000 + a number from this test's PID
port=$((20000 + $$ % 20000))
cat > "$out/etc/slurm.conf" <<EOF
ClusterName=lspotest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$out/munge/sock
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$out/state
SlurmdSpoolDir=$out/spool
SlurmctldPidFile=$out/slurmctld.pid
SlurmdPidFile=$out/slurmd.pid
SlurmctldLogFile=$out/log/slurmctld.log
SlurmdLogFile=$out/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$out/etc/slurm.conf"
n=0; while [ ! -S "$out/munge/sock" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
slurmctld -D -f "$SLURM_CONF" > "$out/log/slurmctld.out" 2>&1 &
pids="$pids $!"
slurmd -D -f "$SLURM_CONF" > "$out/log/slurmd.out" 2>&1 &
pids="$pids $!"
n=0; while ! sinfo -h -o %t 2> /dev/null | grep -q idle && [ $n -lt 150 ]; do sleep 0.2; n=$((n + 1)); done
if ! sinfo -h -o %t | grep -q idle; then
  echo "FAILED: the private Slurm did not come up"; tail -n 20 "$out"/log/*; exit 1
fi
echo "test_slurm: private Slurm up ($(sinfo -h -o '%P %D %t %c'))"

# --- the job ------------------------------------------------------------------
i=0; while [ $i -lt 60 ]; do
  echo "A requeued job picks up where the signalled one stopped." >> "$out/work/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/work/text.txt" "$out/work/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
"$lspo" init --vocab 256 --n-positions 16 --n-embd 16 --n-layer 1 --n-head 2 --seed 3 --out "$out/work/init" > /dev/null \
  || { echo "init failed"; exit 1; }
steps=3000
small="--batch 2 --seq 8 --warmup 20"
# the script's options, then the test's (which override them)
# shellcheck disable=SC2086
"$lspo" train --model "$out/work/init" --data "$out/work/tok.bin" --steps $steps --batch 4 --seq 64 --lr 3e-4 \
  --warmup 20 --lr-decay cosine --mode native $small --save "$out/work/ref" > "$out/work/ref.out" 2>&1 \
  || { echo "FAILED: reference run"; cat "$out/work/ref.out"; fail=1; }

cd "$out/work" || exit 1
job=$(STARPU_HOME="$out/work/starpu" STARPU_SILENT=1 sbatch --parsable --chdir="$out/work" \
  --export="ALL,LSPO=$lspo,MODEL=$out/work/init,DATA=$out/work/tok.bin,OUT=$out/work/run,STEPS=$steps,LSPO_ARGS=$small" \
  "$top/examples/slurm/finetune-cpu.sbatch")
check "sbatch accepts the example script" "[ -n '$job' ]"
log="$out/work/lspo-cpu-$job.out"
n=0; while ! grep -q '^step *50 ' "$log" 2> /dev/null && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
check "the job runs lspo" "grep -q '^step *50 ' '$log'"
scancel -b -s USR1 "$job"
# the first run ends, the job is requeued, starts again and completes
n=0
while [ $n -lt 900 ]; do
  state=$(scontrol show job "$job" 2> /dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  [ "$state" = COMPLETED ] || [ "$state" = FAILED ] || [ "$state" = CANCELLED ] && break
  # Slurm delays a requeued job's start by about two minutes (its begin
  # time); a test need not wait for that
  if [ "$state" = PENDING ] && [ -z "${released:-}" ]; then
    scontrol update JobId="$job" StartTime=now 2> /dev/null && released=1
  fi
  sleep 0.2; n=$((n + 1))
done
echo "test_slurm: job $job ended $state after $(grep -c '^lspo job' "$log") start(s)"
check "the job completes" "[ '$state' = COMPLETED ]"
check "USR1 reached lspo, which saved and exited 75" "grep -q 'SIGUSR1: stopped after step [0-9]*; checkpoint' '$log'"
check "the script requeued the job" "grep -q 'requeueing job $job' '$log' && [ \$(grep -c '^lspo job' '$log') -ge 2 ]"
check "the requeued job resumed" "grep -q 'resumed from .* at step [1-9]' '$log'"
check "same final weights as an uninterrupted run" "cmp -s '$out/work/ref/model.safetensors' '$out/work/run/model.safetensors' && cmp -s '$out/work/ref/train_state.safetensors' '$out/work/run/train_state.safetensors'"
check "the CSV has every step once" "[ \$(tail -n +2 '$out/work/run.csv' | cut -d, -f1 | sort -n | uniq | wc -l) -eq $steps ] && [ \$(wc -l < '$out/work/run.csv') -eq $((steps + 1)) ]"
# no lspo of this job left running (orphaned outside the allocation)
left=$(ps -eo pid=,args= | grep -F "$out/work/run" | grep -v grep | head -n 3)
check "no orphaned lspo ($left)" "[ -z '$left' ]"
if [ $fail -ne 0 ]; then tail -n 40 "$log"; tail -n 20 "$out/log/slurmctld.log"; fi
stop
[ $fail -eq 0 ] && echo "test_slurm: all checks passed"
exit $fail
