#!/bin/sh
# test_paje.sh - a traced 2-step lsp run of a tiny GPT-2 becomes, through
# scripts/paje-trace (starpu_fxt_tool, then starpu_paje_sort), a paje.trace
# that pajeng's pj_dump reads (exit 0), whose events after the definitions
# and container creations are in time order, with a Worker container for
# every worker of the run and, among the worker states, every task name of
# the run's tasks.csv (so every lspo stage of the mode); when ViTE is
# installed, it exports the trace to a non-empty SVG without a display.
# Skipped (77) only when StarPU has no FxT.
set -u
if [ "${LSPO_HAVE_FXT:-no}" != yes ] || [ ! -x "${STARPU_FXT_TOOL:-}" ]; then
  echo "skip: StarPU was built without FxT"; exit 77
fi
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/paje"
rm -rf "$out"; mkdir -p "$out"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; fi; }
command -v pj_dump > /dev/null || {
  echo "FAILED: pajeng's pj_dump is not installed (scripts/install-deps installs pajeng)"; exit 1; }

i=0; while [ $i -lt 40 ]; do
  echo "Every task of the step shows in the trace, on the worker that ran it." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
"$lspo" init --vocab 256 --n-positions 32 --n-embd 32 --n-layer 2 --n-head 2 --seed 3 --out "$out/init" \
  > /dev/null || { echo "init failed"; exit 1; }
dir="$out/trace"
"$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 2 --batch 2 --seq 16 --mode lsp \
  --trace "$dir" > "$out/train.out" 2> "$out/train.err" \
  || { cat "$out/train.err"; echo "FAILED: lspo train --trace"; exit 1; }
# "... policy lspo, 2 CPU + 0 CUDA workers"
ncpu=$(sed -n '1s/.*, \([0-9]*\) CPU + [0-9]* CUDA workers.*/\1/p' "$out/train.out")
ncuda=$(sed -n '1s/.* CPU + \([0-9]*\) CUDA workers.*/\1/p' "$out/train.out")
[ -n "$ncpu" ] && [ -n "$ncuda" ] || { head -n 1 "$out/train.out"; echo "FAILED: no worker count"; exit 1; }

svg=""
if command -v vite > /dev/null; then svg="$out/trace.svg"; fi
"$LSPO_SRCDIR/scripts/paje-trace" --starpu "$(dirname "$(dirname "$STARPU_FXT_TOOL")")" \
  ${svg:+--svg "$svg"} "$dir" > "$out/paje-trace.log" 2>&1
rc=$?
check "scripts/paje-trace exits 0" "[ $rc -eq 0 ] || { cat '$out/paje-trace.log'; false; }"
[ $rc -eq 0 ] || exit 1

pj_dump "$dir/paje.trace" > "$out/dump.csv" 2> "$out/pj_dump.err"
rc=$?
check "pj_dump reads paje.trace" "[ $rc -eq 0 ] || { head -n 5 '$out/pj_dump.err'; false; }"

python3 - "$dir/paje.trace" "$out/dump.csv" "$dir/tasks.csv" "$ncpu" "$ncuda" <<'PY' || fail=1
import csv, re, sys
trace, dump, tasks, ncpu, ncuda = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
bad = []
# Time order: the definitions, container creations and initial variables
# come first; every later event's time (field 2) is at least the previous.
first = {"PajeDefineContainerType", "PajeDefineEventType", "PajeDefineStateType",
         "PajeDefineVariableType", "PajeDefineLinkType", "PajeDefineEntityValue",
         "PajeCreateContainer", "PajeAddVariable"}
head_ids, last, nevents, in_head = set(), None, 0, True
with open(trace) as f:
    for n, line in enumerate(f, 1):
        w = line.split()
        if not w:
            continue
        if w[0] == "%EventDef":
            if w[1] in first:
                head_ids.add(w[2])
            continue
        if w[0].startswith("%"):
            continue
        if in_head and w[0] in head_ids:
            continue
        in_head = False
        t = float(w[1])
        if last is not None and t < last:
            bad.append("paje.trace line %d: time %s after %s (not time-ordered)" % (n, w[1], last))
            break
        last, nevents = t, nevents + 1
if nevents < 100:
    bad.append("paje.trace has %d timed events" % nevents)

workers, states = set(), set()
with open(dump) as f:
    for row in csv.reader(f, skipinitialspace=True):
        if row[0] == "Container" and row[2] == "Worker":
            workers.add(row[6])
        elif row[0] == "State" and row[2] == "Worker State":
            states.add(row[7])
want = {"CPU%d" % i for i in range(ncpu)}
cuda = {w for w in workers if re.match(r"CUDA\d+_\d+$", w)}
if not want <= workers or len(cuda) != ncuda or len(workers) != ncpu + ncuda:
    bad.append("Worker containers %s, expected CPU0..CPU%d and %d CUDA" % (sorted(workers), ncpu - 1, ncuda))
with open(tasks) as f:
    f.readline()
    names = {r["task"] for r in csv.DictReader(f)}
missing = names - states
if missing:
    bad.append("task names of tasks.csv not among the worker states: %s" % sorted(missing)[:10])
stages = {s.rsplit(":", 1)[-1] for s in states if ":" in s}
for s in ("fwd", "bwd", "proj", "upd", "apply"):
    if s not in stages:
        bad.append("no worker state of stage %s" % s)
for x in bad:
    print("FAILED: " + x)
print("paje.trace: %d timed events checked, workers %s, %d task names" % (nevents, sorted(workers), len(names)))
sys.exit(1 if bad else 0)
PY

if [ -n "$svg" ]; then
  check "ViTE exports a non-empty SVG" "[ -s '$svg' ] && grep -q '<svg' '$svg' && grep -q '<rect' '$svg'"
else
  echo "skip: ViTE part (vite not installed; scripts/install-deps installs it)"
fi
[ $fail -eq 0 ] && echo "test_paje: all checks passed"
exit $fail
