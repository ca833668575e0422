#!/bin/sh
# test_fxt_trace.sh - with an FxT-enabled StarPU, a traced task-graph run
# yields a trace that starpu_fxt_tool converts, naming lspo's tasks.
set -eu
if [ "${LSPO_HAVE_FXT:-no}" != yes ] || [ ! -x "${STARPU_FXT_TOOL:-}" ]; then
  echo "skip: StarPU was built without FxT"; exit 77
fi
out="$LSPO_BUILDDIR/tests/out/fxt"
rm -rf "$out"; mkdir -p "$out"
"$LSPO_BUILDDIR/lspo" selftest --n 64 --chains 3 --depth 2 --trace "$out/trace" > "$out/run.log"
grep -q 'OK$' "$out/run.log" || { cat "$out/run.log"; echo "selftest failed"; exit 1; }
set -- "$out"/trace/prof_file_*
[ -f "$1" ] || { echo "no FxT trace file in $out/trace"; exit 1; }
(cd "$out/trace" && "$STARPU_FXT_TOOL" -i "$@" > "$out/fxt_tool.log" 2>&1) \
  || { cat "$out/fxt_tool.log"; echo "starpu_fxt_tool failed"; exit 1; }
for f in paje.trace tasks.rec; do
  [ -s "$out/trace/$f" ] || { echo "starpu_fxt_tool wrote no $f"; exit 1; }
done
n=$(grep -c '^Name: matmul:L[0-9]*:chain' "$out/trace/tasks.rec" || true)
[ "$n" -eq 6 ] || { echo "tasks.rec names $n chain tasks, expected 6"; exit 1; }
grep -q 'matmul' "$out/trace/paje.trace" || { echo "paje.trace names no matmul task"; exit 1; }
echo "FxT trace converted: $n chain tasks in tasks.rec"
