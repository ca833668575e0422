#!/bin/sh
# test_cli_train.sh - `lspo init`, `tokenize`, `train` and `eval` end to end as a
# job script uses them, and the CLI's answers to bad usage (exit code 2, a
# message naming the option or file).
set -u
lspo="$LSPO_BUILDDIR/lspo"
out="$LSPO_BUILDDIR/tests/out/cli_train"
rm -rf "$out"; mkdir -p "$out"
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; fi; }

i=0; while [ $i -lt 40 ]; do
  echo "Every stage of the step is a task; the runtime orders tasks by their data." >> "$out/text.txt"
  i=$((i + 1))
done
"$lspo" tokenize --bytes "$out/text.txt" "$out/tok.bin" > /dev/null || { echo "tokenize failed"; exit 1; }
"$lspo" init --vocab 256 --n-positions 32 --n-embd 32 --n-layer 2 --n-head 2 --seed 3 --out "$out/init" > /dev/null \
  || { echo "init failed"; exit 1; }

"$lspo" train --model "$out/init" --data "$out/tok.bin" --val-fraction 0.2 --steps 6 --batch 2 --seq 16 \
  --lr 1e-3 --wd 0.01 --clip 1 --seed 5 --sched lspo --save "$out/trained" --log "$out/log.csv" \
  > "$out/train.out" 2> "$out/train.err"
check "train exits 0" "[ $? -eq 0 ]"
check "one line per step" "[ \$(grep -c '^step ' '$out/train.out') -eq 6 ]"
check "step line fields" "grep -q '^step     6 | loss [0-9.]* | lr 1.000e-03 | norm [0-9.]* | .* ms | .* tok/s' '$out/train.out'"
check "validation printed" "grep -q '^val step 6: loss [0-9.]*, perplexity' '$out/train.out'"
check "CSV header and rows" "[ \"\$(head -n1 '$out/log.csv')\" = 'step,loss,lr,grad_norm,ms,tokens_per_s,bytes_d2h,bytes_h2d' ] && [ \$(wc -l < '$out/log.csv') -eq 7 ]"
check "checkpoint saved" "[ -s '$out/trained/model.safetensors' ] && [ -s '$out/trained/config.json' ]"

"$lspo" eval --model "$out/trained" --data "$out/tok.bin" --batch 2 --seq 16 --batches 3 > "$out/eval.out" 2>&1
check "eval exits 0" "[ $? -eq 0 ]"
check "eval prints loss and perplexity" "grep -q '^eval: .* loss [0-9.]*, perplexity [0-9.]*' '$out/eval.out'"

# Same seed, same data: the run is reproducible line for line (times aside).
"$lspo" train --model "$out/init" --data "$out/tok.bin" --val-fraction 0.2 --steps 6 --batch 2 --seq 16 \
  --lr 1e-3 --wd 0.01 --clip 1 --seed 5 --sched eager > "$out/train2.out" 2>/dev/null
strip() { sed -n 's/^\(step.*| norm [0-9.]*\) .*/\1/p' "$1"; }
check "reproducible across runs and policies" "[ \"\$(strip '$out/train.out')\" = \"\$(strip '$out/train2.out')\" ]"

# Warmup then cosine decay: the lr column follows the schedule (lr 1e-3 over 2
# warmup steps, then 4 decay steps to 1e-4: 5e-4, 1e-3, 1e-3, 8.68e-4, 5.5e-4, 2.32e-4).
"$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 6 --batch 2 --seq 16 --lr 1e-3 \
  --warmup 2 --lr-decay cosine --min-lr 1e-4 > "$out/sched.out" 2>/dev/null
check "lr schedule in the step lines" "[ \"\$(sed -n 's/.*| lr \([0-9.e+-]*\) |.*/\1/p' '$out/sched.out' | tr '\n' ' ')\" = '5.000e-04 1.000e-03 1.000e-03 8.682e-04 5.500e-04 2.318e-04 ' ]"

# The offload modes through the CLI: they train, and print their analytic volume.
for m in "zero" "zero --offload-dtype bf16" "lsp --lsp-d 16 --lsp-r 4 --check-freq 3 --lsp-cut 1 --lsp-delays upd=1"; do
  # shellcheck disable=SC2086
  "$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 4 --batch 2 --seq 16 --lr 1e-3 --mode $m \
    > "$out/mode.out" 2> "$out/mode.err"
  check "train --mode $m" "[ $? -eq 0 ] && [ \$(grep -c '^step ' '$out/mode.out') -eq 4 ]"
  check "volume line for $m" "grep -q '^offload volume per step (from the graph): device->host [0-9.]* MB' '$out/mode.out'"
done
check "lsp checks at steps 1 and 4" "[ \$(grep -c '^lsp check before step' '$out/mode.out') -eq 2 ]"

# Each check reports every pair (issue 15): a line each, and with --log a CSV
# row each in LOG.checks.csv; the step log keeps its columns.
"$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 4 --batch 2 --seq 16 --lr 1e-3 --mode lsp \
  --lsp-d 16 --lsp-r 4 --check-freq 3 --log "$out/lsp.csv" > "$out/lsp.out" 2> "$out/lsp.err"
check "lsp run with --log" "[ $? -eq 0 ]"
npair=$(grep -c '^  pair [0-9]* ([0-9]*x[0-9]*, d [0-9]*, [0-9]* matri[a-z]*): error [0-9.]* -> [0-9.]*.*|G^|/|G| [0-9.]* -> [0-9.]* (random ~[0-9.]*), [a-z-]*$' "$out/lsp.out")
check "per-pair lines at both checks" "[ $npair -ge 2 ] && [ \$((npair % 2)) -eq 0 ]"
check "checks CSV header" "[ \"\$(head -n1 '$out/lsp.csv.checks.csv')\" = 'step,pair,m,n,d,matrices,err_before,err_after,err_candidate,captured_before,captured_after,captured_random,outcome,effective_step' ]"
check "checks CSV: one row per pair line, steps 1 and 4" "[ \$(tail -n +2 '$out/lsp.csv.checks.csv' | wc -l) -eq $npair ] && [ \"\$(tail -n +2 '$out/lsp.csv.checks.csv' | cut -d, -f1 | sort -u | tr '\n' ' ')\" = '1 4 ' ]"
check "checks CSV outcomes" "! tail -n +2 '$out/lsp.csv.checks.csv' | cut -d, -f13 | grep -qvE '^(kept|learned|rejected-kept|rejected-random)$'"
check "step log keeps its columns" "[ \"\$(head -n1 '$out/lsp.csv')\" = 'step,loss,lr,grad_norm,ms,tokens_per_s,bytes_d2h,bytes_h2d' ] && [ \$(wc -l < '$out/lsp.csv') -eq 5 ]"

# Issue 12: --lsp-learn async: the check before step 1 takes effect before step
# 1 + 3/2 = 2 (LOG.checks.csv's last column), the one before step 4 is still
# learning when the run ends; two runs print the same losses.
for i in 1 2; do
  "$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 4 --batch 2 --seq 16 --lr 1e-3 --mode lsp \
    --lsp-d 16 --lsp-r 4 --check-freq 3 --lsp-learn async --log "$out/async$i.csv" > "$out/async$i.out" 2>&1
  check "lsp --lsp-learn async run $i" "[ $? -eq 0 ]"
done
check "async: the check took effect before step 2" "grep -q '^lsp check before step 1 took effect before step 2:' '$out/async1.out' && [ \"\$(tail -n +2 '$out/async1.csv.checks.csv' | cut -d, -f1,14 | sort -u | tr '\n' ' ')\" = '1,2 ' ]"
cut -d, -f1,2 "$out/async1.csv" > "$out/async1.loss"; cut -d, -f1,2 "$out/async2.csv" > "$out/async2.loss"
check "async: deterministic losses" "[ \$(wc -l < '$out/async1.loss') -eq 5 ] && cmp -s '$out/async1.loss' '$out/async2.loss'"
"$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 1 --mode lsp --lsp-learn later > /dev/null 2> "$out/bad.err"
check "--lsp-learn later refused" "[ $? -eq 2 ] && grep -q 'lsp-learn: expected sync or async' '$out/bad.err'"
"$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 1 --mode lsp --lsp-learn async --check-freq 3 \
  --lsp-learn-lag 4 > /dev/null 2> "$out/bad.err"
check "--lsp-learn-lag above --check-freq refused" "[ $? -eq 2 ] && grep -q 'lsp-learn-lag 4 exceeds --check-freq 3' '$out/bad.err'"
# lag = check-freq: each check takes effect just before the next one starts (steps 1 -> 3 -> 5)
"$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 6 --batch 2 --seq 16 --lr 1e-3 --mode lsp \
  --lsp-d 16 --lsp-r 4 --check-freq 2 --lsp-learn async --lsp-learn-lag 2 --log "$out/async3.csv" > "$out/async3.out" 2>&1
check "async, lag = check-freq" "[ $? -eq 0 ] && [ \"\$(tail -n +2 '$out/async3.csv.checks.csv' | cut -d, -f1,14 | sort -u | tr '\n' ' ')\" = '1,3 3,5 ' ]"

# The apply's gain sqrt(m n) / (|P| |Q|) is exactly 1 for sign projectors
# with r = 4 (values +-1/2): --lsp-plain-apply changes nothing there, and
# changes the steps of Gaussian ones.
losses() { sed -n 's/^step *[0-9]* | loss \([0-9.]*\) .*/\1/p' "$1" | tr '\n' ' '; }
for init in sign gaussian; do
  for plain in "" "--lsp-plain-apply"; do
    # shellcheck disable=SC2086
    "$lspo" train --model "$out/init" --data "$out/tok.bin" --steps 4 --batch 2 --seq 16 --lr 1e-2 --mode lsp \
      --lsp-d 16 --lsp-r 4 --check-freq 0 --lsp-init $init $plain > "$out/gain-$init$plain.out" 2>&1
  done
done
check "plain apply, sign projectors: same losses" "[ -n \"\$(losses '$out/gain-sign.out')\" ] && [ \"\$(losses '$out/gain-sign.out')\" = \"\$(losses '$out/gain-sign--lsp-plain-apply.out')\" ]"
check "plain apply, Gaussian projectors: other losses" "[ \"\$(losses '$out/gain-gaussian.out')\" != \"\$(losses '$out/gain-gaussian--lsp-plain-apply.out')\" ]"

# A run stopped after 3 steps and resumed to 6 equals the run of 6 steps,
# bit for bit: losses, norms, weights and training state; the log appends.
# (--steps 3 then 6 changes the schedule's end, which --resume refuses
# without --resume-override; here the first 6 steps' rates agree. The
# signal and --save-every paths, with one --steps, are in test_jobs.sh.)
strip() { sed -n 's/^\(step.*| norm [0-9.]*\) .*/\1/p' "$@"; }
for m in "native" "zero --offload-dtype bf16" "lsp --lsp-d 16 --lsp-r 4 --check-freq 2"; do
  rm -rf "$out/full" "$out/half" "$out/rest" "$out/half.csv"
  common="--data $out/tok.bin --steps 6 --batch 2 --seq 16 --lr 1e-3 --warmup 2 --lr-decay cosine --seed 5 --mode $m"
  # shellcheck disable=SC2086
  "$lspo" train --model "$out/init" $common --save "$out/full" > "$out/full.out" 2>/dev/null \
    && "$lspo" train --model "$out/init" $common --steps 3 --save "$out/half" --log "$out/half.csv" > "$out/half.out" 2>/dev/null \
    && "$lspo" train --resume "$out/half" $common --resume-override --save "$out/rest" --log "$out/half.csv" > "$out/rest.out" 2>/dev/null
  check "resume runs ($m)" "[ $? -eq 0 ] && grep -q '^resumed from .* at step 3' '$out/rest.out'"
  check "resume: same steps ($m)" "[ \"\$(strip '$out/full.out')\" = \"\$(strip '$out/half.out' '$out/rest.out')\" ]"
  check "resume: same weights and state ($m)" "cmp -s '$out/full/model.safetensors' '$out/rest/model.safetensors' && cmp -s '$out/full/train_state.safetensors' '$out/rest/train_state.safetensors'"
  check "resume: the log appends ($m)" "[ \$(wc -l < '$out/half.csv') -eq 7 ] && [ \$(grep -c '^step' '$out/half.csv') -eq 1 ]"
done

bad() {  # expected exit code, words the message must contain, then the command
  want=$1; words=$2; shift 2
  "$@" > "$out/bad.out" 2> "$out/bad.err"; rc=$?
  if [ $rc -ne "$want" ]; then echo "FAILED: '$*' exited $rc, expected $want"; cat "$out/bad.err"; fail=1; return; fi
  for w in $words; do
    grep -q -- "$w" "$out/bad.err" || { echo "FAILED: '$*': stderr lacks '$w'"; cat "$out/bad.err"; fail=1; }
  done
}
bad 2 "--steps" "$lspo" train --model "$out/init" --data "$out/tok.bin" --steps -3
bad 2 "--lr" "$lspo" train --model "$out/init" --data "$out/tok.bin" --lr abc
bad 2 "--bogus" "$lspo" train --model "$out/init" --data "$out/tok.bin" --bogus 1
bad 2 "--model" "$lspo" train --data "$out/tok.bin"
bad 2 "--mode" "$lspo" train --model "$out/init" --data "$out/tok.bin" --mode turbo
bad 2 "policy" "$lspo" train --model "$out/init" --data "$out/tok.bin" --sched nosuch --steps 1 --seq 8
bad 2 "n_positions config.json" "$lspo" train --model "$out/init" --data "$out/tok.bin" --seq 33
bad 1 "nothere" "$lspo" train --model "$out/nothere" --data "$out/tok.bin"
bad 1 "missing.bin" "$lspo" eval --model "$out/init" --data "$out/missing.bin" --seq 16
bad 2 "" "$lspo" frobnicate
bad 2 "--offload-dtype" "$lspo" train --model "$out/init" --data "$out/tok.bin" --offload-dtype fp16
bad 2 "zero" "$lspo" train --model "$out/init" --data "$out/tok.bin" --mode lsp --offload-dtype bf16
bad 2 "--lsp-delays" "$lspo" train --model "$out/init" --data "$out/tok.bin" --lsp-delays upd=x
bad 2 "--lsp-r" "$lspo" train --model "$out/init" --data "$out/tok.bin" --mode lsp --lsp-d 4 --lsp-r 8
bad 2 "--lr-decay" "$lspo" train --model "$out/init" --data "$out/tok.bin" --lr-decay step
bad 2 "--min-lr" "$lspo" train --model "$out/init" --data "$out/tok.bin" --lr 1e-4 --min-lr 1e-3 --lr-decay linear
check "help documents every option" "\"$lspo\" train --help | grep -q -- '--val-fraction' && \"$lspo\" train --help | grep -q -- '--save'"
[ $fail -eq 0 ] && echo "test_cli_train: all checks passed"
exit $fail
