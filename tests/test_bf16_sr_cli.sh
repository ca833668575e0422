#!/bin/sh
# test_bf16_sr_cli.sh - `lspo train --bf16-update` and `--random-init`:
# bad uses are usage errors naming the option; a run from config.json alone
# trains with stochastic updates; saved and resumed, it continues bit for bit
# (losses of steps 4..6 equal the uninterrupted run's); the option is part of
# the run's identity on resume.
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/bf16_sr_cli"
rm -rf "$out"; mkdir -p "$out/cfg"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; else echo "ok: $1"; fi; }

i=0; while [ $i -lt 20 ]; do
  echo "Rounded up or down at random, small updates add up on average." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
printf '{"model_type": "gpt2", "vocab_size": 256, "n_positions": 32, "n_embd": 32, "n_layer": 2, "n_head": 2}\n' \
  > "$out/cfg/config.json"
run="--model $out/cfg --random-init --data $out/tok.bin --batch 2 --seq 16 --lr 1e-3 --ncpus 1 --check-freq 0 \
  --lsp-d 8 --lsp-r 2"

usage() {   # usage NAME PATTERN ARGS...
  name=$1 pat=$2; shift 2
  # shellcheck disable=SC2086
  "$lspo" train $run --steps 1 "$@" > "$out/bad.out" 2> "$out/bad.err"
  check "$name is a usage error" "[ $? -eq 2 ] && grep -q -- \"$pat\" '$out/bad.err'"
}
usage "--bf16-update up" "--bf16-update: expected master or stochastic, got 'up'" --dtype bf16 --bf16-update up
usage "stochastic without bf16" "--bf16-update stochastic needs --dtype bf16" --bf16-update stochastic
usage "stochastic in zero mode" "applies to --mode native and lsp" --mode zero --dtype bf16 --bf16-update stochastic

# shellcheck disable=SC2086
"$lspo" train $run --steps 1 > "$out/noinit.out" 2>&1
check "--random-init trains from config.json alone" "[ $? -eq 0 ] && grep -q '^step ' '$out/noinit.out'"
"$lspo" train --model "$out/cfg" --data "$out/tok.bin" --steps 1 --batch 2 --seq 16 > "$out/noweights.out" 2>&1
check "without --random-init, missing weights are an error" "[ $? -ne 0 ]"

losses() { sed -n 's/^step .*| loss \([0-9.]*\) |.*/\1/p' "$1" | tr '\n' ' '; }
sr="--mode lsp --dtype bf16 --bf16-update stochastic"
# shellcheck disable=SC2086
"$lspo" train $run $sr --steps 6 --save "$out/a" > "$out/a.out" 2>&1
check "lsp --bf16-update stochastic trains" "[ $? -eq 0 ] && grep -q 'no master on the accelerator (stochastic rounding)' '$out/a.out'"
# shellcheck disable=SC2086
"$lspo" train $run $sr --steps 3 --save "$out/b" > /dev/null 2>&1
# shellcheck disable=SC2086
"$lspo" train $run $sr --steps 6 --save "$out/b" --resume auto > "$out/b.out" 2>&1
check "resumed at step 3, steps 4..6 equal the uninterrupted run's" \
  "[ \"$(losses "$out/b.out")\" = \"$(losses "$out/a.out" | cut -d' ' -f4-)\" ] && [ -n \"$(losses "$out/b.out")\" ]"
# shellcheck disable=SC2086
"$lspo" train $run --mode lsp --dtype bf16 --steps 8 --save "$out/b" --resume auto > "$out/c.out" 2>&1
check "resuming with another --bf16-update is refused, naming it" "[ $? -ne 0 ] && grep -q 'bf16-update' '$out/c.out'"
[ $fail -eq 0 ] && echo "test_bf16_sr_cli: all checks passed"
exit $fail
