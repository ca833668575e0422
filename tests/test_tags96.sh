#!/bin/sh
# test_tags96.sh - task tags at depth (issue 8): a 96-layer tiny GPT-2
# (n_embd 8, 2 heads, B 1, T 4) trains two steps under the lspo policy with
# a trace, in lsp mode (with the projector check before each step) and in
# zero mode with bf16 transfers (the modes that have offload and upload
# tasks); so does a 96-layer tiny Llama (grouped-query attention) in lsp
# mode.  In DIR/tasks.csv every task, in every step and outside steps,
# must carry a tag (a stage; never "lspo:overflow"); every task without a
# layer must be one of the known step-level tags "<op>:<stage>"; each stage
# of the mode must cover its layers (fwd, bwd 0 .. 96; the update pipeline
# 0 .. 95), and lsp must apply the four compressed matrices of every block
# in every step (seven for Llama).
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/tags96"
rm -rf "$out"; mkdir -p "$out"
L=96
command -v python3 > /dev/null || { echo "skip: no python3"; exit 77; }

i=0; while [ $i -lt 20 ]; do
  echo "Deep models name every task with its stage and its layer." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
"$lspo" init --vocab 256 --n-positions 8 --n-embd 8 --n-layer $L --n-head 2 --seed 5 --out "$out/gpt2" \
  > /dev/null || { echo "init failed"; exit 1; }
"$lspo" init --family llama --vocab 256 --n-positions 8 --n-embd 8 --n-layer $L --n-head 2 --n-kv-head 1 \
  --intermediate 16 --seed 5 --out "$out/llama" > /dev/null || { echo "init --family llama failed"; exit 1; }
fail=0
run() {  # NAME MODEL MATRICES ARGS...: trains two steps with a trace in $out/NAME
  name=$1 model=$2 nmats=$3; shift 3
  "$lspo" train --model "$out/$model" --data "$out/tok.bin" --steps 2 --batch 1 --seq 4 --sched lspo \
    --trace "$out/$name" "$@" > "$out/$name.out" 2> "$out/$name.err"
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAILED: $name: lspo train exits $rc"; tail -n 20 "$out/$name.err"; fail=1; return 1
  fi
  if grep -q overflow "$out/$name.err"; then
    echo "FAILED: $name: the log mentions an overflow"; fail=1; return 1
  fi
  check_tags "$out/$name/tasks.csv" "$name" "$nmats" || fail=1
}

check_tags() {  # CSV NAME MATRICES (compressed per block, lsp)
python3 - "$1" "$2" "$3" $L <<'PY'
import collections, csv, re, sys
path, name, nmats, L = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mode = name.split("-")[-1]
# Tasks that belong to the whole step, not to a layer (today's engine):
# the gradient-norm clip scale.  (The fills that zero the AdamW moments in
# set_params, outside steps, carry their tensor's layer.)
IN_STEPS = {"clip_scale:upd"}
OUTSIDE = IN_STEPS
STAGES = {"fwd", "bwd", "proj", "offload", "upd", "upload", "apply",
          "check", "learn", "reproject", "recompute", "reduce"}
bad = []
with open(path) as f:
    f.readline()
    rows = list(csv.DictReader(f))
if len(rows) < 1000:
    bad.append("only %d tasks traced" % len(rows))
steps = sorted({int(r["step"]) for r in rows} - {0})
if steps != [1, 2]:
    bad.append("steps %s, expected [1, 2]" % steps)
tag = re.compile(r"^([A-Za-z0-9_.-]{1,31})(?::L(0|[1-9][0-9]*))?:([a-z]+)$")
untagged = collections.Counter()
step_level = collections.Counter()
layers = collections.defaultdict(set)     # (step, stage) -> layers
applies = collections.Counter()           # step -> apply tasks
unknown = set()
for r in rows:
    task, layer, stage, step = r["task"], int(r["layer"]), r["stage"], int(r["step"])
    m = tag.match(task)
    if not stage or stage not in STAGES or not m or m.group(3) != stage:
        untagged[task] += 1
        continue
    if layer < 0:
        if m.group(2) is not None:
            bad.append("%s: a layer in the task but layer %d in the trace" % (task, layer))
        step_level[task] += 1
        if task not in (IN_STEPS if step > 0 else OUTSIDE):
            unknown.add("%s (%s)" % (task, "step %d" % step if step > 0 else "outside steps"))
        continue
    if m.group(2) is None or int(m.group(2)) != layer:
        bad.append("%s: layer %d in the trace" % (task, layer))
    if layer > L:
        bad.append("%s: layer %d beyond the head (%d)" % (task, layer, L))
    layers[(step, stage)].add(layer)
    if stage == "apply" and step > 0:
        applies[step] += 1
if untagged:
    bad.append("%d tasks without a tag: %s" % (sum(untagged.values()),
               ", ".join("%s x%d" % kv for kv in untagged.most_common(8))))
if unknown:
    bad.append("tasks without a layer that are not known step-level tags: %s" % sorted(unknown))
pipeline = {"lsp": ("proj", "upd", "apply"), "zero": ("offload", "upd", "upload", "apply")}[mode]
for s in steps:
    for stage, top in [("fwd", L), ("bwd", L)] + [(p, L - 1) for p in pipeline]:
        missing = sorted(set(range(top + 1)) - layers[(s, stage)])
        if missing:
            bad.append("step %d: no %s task for layers %s%s" % (s, stage, missing[:10],
                       " ..." if len(missing) > 10 else ""))
    if mode == "lsp" and applies[s] < nmats * L:
        bad.append("step %d: %d apply tasks, expected at least %d (%d matrices x %d layers)"
                   % (s, applies[s], nmats * L, nmats, L))
print("tags96 %s: %d tasks, %d step-level (%s), apply per step %s"
      % (name, len(rows), sum(step_level.values()),
         ", ".join("%s x%d" % kv for kv in sorted(step_level.items())), dict(applies)))
for b in bad:
    print("FAILED: %s: %s" % (name, b))
sys.exit(1 if bad else 0)
PY
}

run gpt2-lsp gpt2 4 --mode lsp --lsp-d 8 --lsp-r 4 --check-freq 1 --lsp-calib-batches 1
run gpt2-zero gpt2 0 --mode zero --offload-dtype bf16
run llama-lsp llama 7 --mode lsp --lsp-d 8 --lsp-r 4 --check-freq 1 --lsp-calib-batches 1
[ $fail -eq 0 ] && echo "test_tags96: all checks passed"
exit $fail
