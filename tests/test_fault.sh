#!/bin/sh
# test_fault.sh - kill -9 at 20 random moments of a run that saves every
# step (so most kills land inside a save), resuming after each with the same
# command line (--resume auto).  After every kill the save directory must
# hold a complete, verified checkpoint (`lspo check --ckpt`); at the end the
# losses, weights and training state equal an uninterrupted run's bit for
# bit, the CSV log has every step exactly once, and no temporary file is left.
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/fault"
rm -rf "$out"; mkdir -p "$out"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; fi; }

i=0; while [ $i -lt 60 ]; do
  echo "A checkpoint is whole or absent: the previous one or the new one, never a mix." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
"$lspo" init --vocab 256 --n-positions 16 --n-embd 16 --n-layer 1 --n-head 2 --seed 3 --out "$out/init" > /dev/null \
  || { echo "init failed"; exit 1; }

steps=${LSPO_FAULT_STEPS:-600}   # far more than 20 short runs reach
common="--model $out/init --data $out/tok.bin --steps $steps --batch 2 --seq 8 --lr 1e-3 --warmup 10 --lr-decay cosine --seed 7"
# shellcheck disable=SC2086
"$lspo" train $common --save "$out/ref" --log "$out/ref.csv" > "$out/ref.out" 2>&1 || { echo "reference run failed"; cat "$out/ref.out"; exit 1; }

rows() { if [ -f "$out/run.csv" ]; then wc -l < "$out/run.csv"; else echo 0; fi; }
rnd() { awk -v s="$1" -v k="$2" 'BEGIN { srand(s); printf "%.3f", rand() * k }'; }
kills=0 tries=0
while [ $kills -lt 20 ] && [ $tries -lt 60 ]; do
  tries=$((tries + 1))
  # a random number of new rows (steps) before the kill, 0 = during the start,
  # then a random moment within the next few milliseconds (mostly in a save)
  target=$(awk -v s="$tries" 'BEGIN { srand(s * 7919 + 13); printf "%d", rand() * 12 }')
  base=$(rows)
  # shellcheck disable=SC2086
  "$lspo" train $common --save "$out/run" --save-every 1 --resume auto --log "$out/run.csv" \
    >> "$out/run.out" 2>&1 &
  pid=$!
  if [ "$target" -eq 0 ]; then
    sleep "$(rnd $((tries * 31)) 0.4)"
  else
    n=0; while [ "$(rows)" -lt $((base + target)) ] && [ $n -lt 3000 ] && kill -0 $pid 2>/dev/null; do
      sleep 0.01; n=$((n + 1))
    done
    sleep "$(rnd $((tries * 17)) 0.03)"
  fi
  if kill -9 $pid 2>/dev/null; then kills=$((kills + 1)); fi
  wait $pid 2>/dev/null
  if [ -e "$out/run/latest" ]; then
    "$lspo" check --ckpt "$out/run" > "$out/check.out" 2>&1 \
      || { echo "FAILED: after kill $kills (try $tries) the save directory is not a complete checkpoint:"; cat "$out/check.out"; fail=1; }
  fi
  grep -q '^step *'"$steps"' ' "$out/run.out" && break   # finished before the kill
done
echo "test_fault: $kills kill -9 in $tries runs, the last checkpoint at $(readlink "$out/run/latest")"
check "20 kills before the end" "[ $kills -eq 20 ]"
# the rest in one go (saving every step changes nothing but the time)
# shellcheck disable=SC2086
"$lspo" train $common --save "$out/run" --resume auto --log "$out/run.csv" >> "$out/run.out" 2>&1
check "the last resume completes" "[ $? -eq 0 ]"
check "same final weights as the uninterrupted run" "cmp -s '$out/ref/model.safetensors' '$out/run/model.safetensors'"
check "same final training state" "cmp -s '$out/ref/train_state.safetensors' '$out/run/train_state.safetensors'"
cols() { cut -d, -f1-4 "$1"; }
check "the CSV has every step once, with the uninterrupted run's losses" "[ \"\$(cols '$out/ref.csv')\" = \"\$(cols '$out/run.csv')\" ]"
check "every step once in the CSV" "[ \$(tail -n +2 '$out/run.csv' | cut -d, -f1 | sort -n | uniq | wc -l) -eq $steps ] && [ \$(wc -l < '$out/run.csv') -eq $((steps + 1)) ]"
left=$(find "$out/run" -name '.tmp-*' -o -name '*.tmp.*' | head -n 5)
check "no temporary file left ($left)" "[ -z '$left' ]"
check "--keep 2: at most two checkpoints kept" "[ \$(find '$out/run' -maxdepth 1 -name 'step-*' | wc -l) -le 2 ]"
[ $fail -eq 0 ] && echo "test_fault: all checks passed"
exit $fail
