#!/bin/sh
# test_trace.sh - `lspo train --trace DIR` writes DIR/tasks.csv (one row per
# executed task: every stage of every layer the mode has, steps 1 and 2,
# start <= end) and DIR/summary.txt (busy share per worker, bytes per bus
# direction, a critical path no longer than its step); with FxT, the trace
# of the same run converts; bench/compare-schedules runs (if gnuplot is
# installed) and writes its table and Gantt charts.
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/trace"
rm -rf "$out"; mkdir -p "$out"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; fi; }
L=2   # transformer blocks; layer L is the final layernorm and LM head

i=0; while [ $i -lt 40 ]; do
  echo "Every stage of the step is a task; the runtime orders tasks by their data." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
"$lspo" init --vocab 256 --n-positions 32 --n-embd 32 --n-layer $L --n-head 2 --seed 3 --out "$out/init" \
  > /dev/null || { echo "init failed"; exit 1; }

# Checks tasks.csv and summary.txt of DIR for MODE; prints what failed.
check_trace() {  # DIR MODE
  python3 - "$1" "$2" $L <<'PY'
import csv, re, sys
d, mode, L = sys.argv[1], sys.argv[2], int(sys.argv[3])
bad = []
with open(d + "/tasks.csv") as f:
    first = f.readline()
    if not first.startswith("#") or "bytes" not in first:
        bad.append("tasks.csv lacks its header comment defining bytes")
    rows = list(csv.DictReader(f))
cols = ["step", "task", "layer", "stage", "worker", "worker_kind", "submit_us", "start_us", "end_us",
        "bytes", "job_id", "priority"]
if not rows or list(rows[0].keys()) != cols:
    bad.append("tasks.csv columns %s, expected %s" % (list(rows[0].keys()) if rows else "none", cols))
    rows = []
steps = sorted({int(r["step"]) for r in rows} - {0})
if steps != [1, 2]:
    bad.append("steps %s, expected [1, 2]" % steps)
have = {(int(r["layer"]), r["stage"]) for r in rows if int(r["step"]) > 0}
stages = {r["stage"] for r in rows if int(r["step"]) > 0}
want = [(l, s) for l in range(L + 1) for s in ("fwd", "bwd")]
if mode == "lsp":   # every block layer compresses, updates in the subspace, applies
    want += [(l, s) for l in range(L) for s in ("proj", "upd", "apply")]
missing = [w for w in want if w not in have]
if missing:
    bad.append("no task for (layer, stage) %s" % missing)
if "upd" not in stages:
    bad.append("no upd stage")
for r in rows:
    if float(r["start_us"]) > float(r["end_us"]) or float(r["submit_us"]) > float(r["start_us"]):
        bad.append("task %s (job %s): not submit <= start <= end" % (r["task"], r["job_id"]))
        break
    if r["worker_kind"] not in ("cpu", "cuda"):
        bad.append("worker_kind %r" % r["worker_kind"])
        break
jobs = [r["job_id"] for r in rows]
if len(set(jobs)) != len(jobs):
    bad.append("a job id appears twice")
if not any(int(r["bytes"]) > 0 for r in rows if r["stage"] == "fwd"):
    bad.append("no fwd task has buffer bytes")

text = open(d + "/summary.txt").read()
blocks = re.split(r"\n(?=step \d+:|overall:|outside)", text)
nsteps = 0
for b in blocks:
    m = re.match(r"step (\d+): wall ([0-9.]+) ms", b)
    if not m and not b.startswith("overall:"):
        continue
    name = "step " + m.group(1) if m else "overall"
    if m:
        nsteps += 1
        cp = re.search(r"critical path: ([0-9.]+) ms = [0-9.]+% of wall, (\d+) tasks: \S", b)
        if not cp:
            bad.append("%s: no critical path line" % name)
        elif float(cp.group(1)) > float(m.group(2)) or float(cp.group(1)) <= 0 or int(cp.group(2)) < 2:
            bad.append("%s: critical path %s ms over %s tasks vs wall %s ms"
                       % (name, cp.group(1), cp.group(2), m.group(2)))
    if not re.search(r"worker \d+ .*: busy [0-9.]+% \(", b):
        bad.append("%s: no per-worker busy share" % name)
    if not re.search(r"bytes: host->device \d+, device->host \d+", b):
        bad.append("%s: no bytes line" % name)
    if not re.search(r"transfers: \d+, bus time [0-9.]+ ms .*hidden behind compute [0-9.]+ ms", b):
        bad.append("%s: no transfer line" % name)
if nsteps != 2:
    bad.append("summary.txt has %d step blocks, expected 2" % nsteps)
for x in bad:
    print(d + ": " + x)
sys.exit(1 if bad else 0)
PY
}

modes=native
# The --mode paragraph of the help names the accepted modes.
"$lspo" train --help | awk '/^ *--mode / { on = 1; print; next } on && /^ *--/ { exit } on' \
  | grep -qw lsp && modes="native lsp"
for mode in $modes; do
  dir="$out/$mode"
  "$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 2 --batch 2 --seq 16 --mode $mode \
    --sched eager --trace "$dir" > "$out/train-$mode.out" 2> "$out/train-$mode.err"
  rc=$?
  check "$mode: train --trace exits 0" "[ $rc -eq 0 ] || { cat '$out/train-$mode.err'; false; }"
  check "$mode: tasks.csv and summary.txt written" "[ -s '$dir/tasks.csv' ] && [ -s '$dir/summary.txt' ]"
  [ -s "$dir/tasks.csv" ] && [ -s "$dir/summary.txt" ] && check "$mode: trace content" "check_trace '$dir' $mode"
done

# Tasks of any policy are recorded (dmdas and ws run their own hooks too).
for policy in dmdas lws; do
  "$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 2 --batch 2 --seq 16 \
    --sched $policy --trace "$out/$policy" > /dev/null 2>&1
  check "$policy: trace content" "check_trace '$out/$policy' native"
done

# --sched wins over STARPU_SCHED, and the hooks wrap the policy that runs.
STARPU_SCHED=eager "$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 2 --batch 2 --seq 16 \
  --sched dmdas --trace "$out/env-dmdas" > "$out/env-dmdas.out" 2>&1
check "STARPU_SCHED=eager --sched dmdas: trace content" "check_trace '$out/env-dmdas' native"

if [ "${LSPO_HAVE_FXT:-no}" = yes ] && [ -x "${STARPU_FXT_TOOL:-}" ]; then
  set -- "$out"/native/prof_file_*
  check "FxT trace recorded" "[ -f '$1' ]"
  if [ -f "$1" ]; then
    (cd "$out/native" && "$STARPU_FXT_TOOL" -i "$@" > "$out/fxt_tool.log" 2>&1)
    check "starpu_fxt_tool converts the trace" "[ $? -eq 0 ] && [ -s '$out/native/paje.trace' ] && [ -s '$out/native/tasks.rec' ]"
    check "tasks.rec names lspo tasks" "grep -q '^Name: matmul:L0:fwd' '$out/native/tasks.rec' && grep -q '^Name: adamw:L[0-9]*:upd' '$out/native/tasks.rec'"
    check "paje.trace names lspo tasks" "grep -q 'matmul:L0:fwd' '$out/native/paje.trace'"
  fi
else
  echo "skip: FxT part (StarPU without FxT)"
fi

if command -v gnuplot > /dev/null && [ -x "$LSPO_SRCDIR/bench/compare-schedules" ]; then
  "$LSPO_SRCDIR/bench/compare-schedules" --lspo "$lspo" --layers 1 --embd 32 --heads 2 --vocab 256 \
    --batch 2 --seq 16 --steps 3 --warmup 0 --modes native --policies "eager prio" --out "$out/cmp" \
    > "$out/cmp.log" 2>&1
  check "compare-schedules exits 0" "[ $? -eq 0 ] || { tail -n 20 '$out/cmp.log'; false; }"
  check "table rows" "[ \$(grep -c '^| native | \(eager\|prio\) | [0-9.]* | 2 | [0-9]* | [0-9.]* | w0 [0-9]*%' '$out/cmp/table.md') -eq 2 ]"
  for p in eager prio; do
    check "$p: Gantt PNG" "head -c 8 '$out/cmp/native-$p/gantt.png' 2>/dev/null | grep -q PNG"
    check "$p: traced" "[ -s '$out/cmp/native-$p/trace/tasks.csv' ]"
  done
else
  echo "skip: compare-schedules part (no gnuplot)"
fi
[ $fail -eq 0 ] && echo "test_trace: all checks passed"
exit $fail
