#!/bin/sh
# test_tokenize_cli.sh - `lspo encode`, `lspo decode` and `lspo tokenize
# --tokenizer` with the small byte-level BPE of tests/ref/tokenizer/tiny (no
# npm needed): round trips, document separators, the shard layout, JSONL
# instruction data and its loss mask, vocabulary checks, and malformed
# inputs (exit 1, the message naming the file and what is wrong) and usage
# errors (exit 2).
set -u
lspo="$LSPO_BUILDDIR/lspo"
tok="$LSPO_SRCDIR/tests/ref/tokenizer/tiny"
out="$LSPO_BUILDDIR/tests/out/tokenize_cli"
rm -rf "$out"; mkdir -p "$out"
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }
fail=0
err() { echo "FAIL: $*"; fail=1; }

# expect CODE TEXT -- ARGS...: exit code CODE and TEXT in stderr
expect() {
  code=$1 text=$2; shift 3
  "$lspo" "$@" > "$out/stdout" 2> "$out/stderr"; rc=$?
  if [ "$rc" -ne "$code" ]; then err "lspo $*: exit code $rc, expected $code"; cat "$out/stderr"; return; fi
  grep -qF -- "$text" "$out/stderr" || { err "lspo $*: stderr lacks '$text'"; cat "$out/stderr"; return; }
  echo "ok: lspo $* -> $rc"
}

# --- encode / decode --------------------------------------------------------
printf 'the cat sat on the mat.\r\n\tthey'"'"'re  here<|endoftext|>h\303\251llo 1234 \360\237\230\200\n' > "$out/a.txt"
"$lspo" encode --tokenizer "$tok" "$out/a.txt" > "$out/a.ids" || err "encode"
"$lspo" encode --tokenizer "$tok/tokenizer.json" < "$out/a.txt" > "$out/a2.ids" || err "encode stdin"
cmp -s "$out/a.ids" "$out/a2.ids" || err "encode of a file and of stdin differ"
grep -q ' 338 ' "$out/a.ids" || err "<|endoftext|> (338) not recognised: $(cat "$out/a.ids")"
[ "$(wc -w < "$out/a.ids")" -lt "$(wc -c < "$out/a.txt")" ] || err "no merges applied"
"$lspo" decode --tokenizer "$tok" "$out/a.ids" > "$out/a.dec" || err "decode"
cmp -s "$out/a.txt" "$out/a.dec" || err "decode(encode(x)) != x"
printf '' | "$lspo" encode --tokenizer "$tok" > "$out/empty.ids" || err "encode of nothing"
[ "$(cat "$out/empty.ids")" = "" ] || err "encode of nothing printed ids"

# --- tokenize: documents ----------------------------------------------------
printf 'the cat' > "$out/d1.txt"; printf 'the dog' > "$out/d2.txt"
"$lspo" tokenize --tokenizer "$tok" "$out/d1.txt" "$out/d2.txt" "$out/docs.bin" > "$out/log" || err "tokenize"
"$lspo" tokenize --tokenizer "$tok" --bos --eos "$out/d1.txt" "$out/d2.txt" "$out/docs2.bin" > /dev/null || err "tokenize --bos --eos"
for f in d1 d2; do "$lspo" encode --tokenizer "$tok" "$out/$f.txt" > "$out/$f.ids"; done
python3 - "$out" <<'PY' || fail=1
import struct, sys
out = sys.argv[1]
def shard(p):
    d = open(p, "rb").read()
    h = struct.unpack("<256i", d[:1024])
    assert h[0] == 20240520 and h[1] == 1 and not any(h[3:]), h[:4]
    assert len(d) == 1024 + 2 * h[2]
    return list(struct.unpack("<%dH" % h[2], d[1024:]))
ids = lambda f: [int(x) for x in open(out + "/" + f).read().split()]
d1, d2, E = ids("d1.ids"), ids("d2.ids"), 338
a, b = shard(out + "/docs.bin"), shard(out + "/docs2.bin")
if a != d1 + [E] + d2: sys.exit("FAIL: default separator: %s vs %s" % (a, d1 + [E] + d2))
if b != [E] + d1 + [E, E] + d2 + [E]: sys.exit("FAIL: --bos --eos: %s" % b)
print("ok: document separators (EOS between; BOS/EOS around each)")
PY
grep -q 'EOS between documents' "$out/log" || err "tokenize log: $(cat "$out/log")"
"$lspo" check --vocab 339 "$out/docs.bin" > /dev/null || err "check --vocab 375"
expect 1 "docs.bin: token id 338 at position" -- check --vocab 300 "$out/docs.bin"

# --- tokenize: instruction data -----------------------------------------------
printf '{"q": "the cat", "a": "sat on the mat", "x": 1}\n\n{"q": "the dog", "a": "ate"}\n' > "$out/sft.jsonl"
printf 'Q: {prompt}\nA: {response}' > "$out/tpl.txt"
"$lspo" tokenize --tokenizer "$tok" --jsonl "$out/sft.jsonl" --prompt-field q --response-field a \
  --template "$out/tpl.txt" "$out/sft.bin" > "$out/log" || err "tokenize --jsonl"
for s in "Q: the cat
A: " "sat on the mat" "Q: the dog
A: " "ate"; do printf '%s' "$s" | "$lspo" encode --tokenizer "$tok"; done > "$out/parts.ids"
python3 - "$out" <<'PY' || fail=1
import struct, sys
out = sys.argv[1]
d = open(out + "/sft.bin", "rb").read(); m = open(out + "/sft.bin.mask", "rb").read()
h = struct.unpack("<3i", d[:12]); mh = struct.unpack("<256i", m[:1024])
n = h[2]
toks = list(struct.unpack("<%dH" % n, d[1024:]))
if mh[:3] != (20241130, 1, n) or any(mh[3:]) or len(m) != 1024 + n: sys.exit("FAIL: mask header %s" % (mh[:3],))
mask = list(m[1024:])
p = [[int(x) for x in l.split()] for l in open(out + "/parts.ids").read().splitlines()]
want = p[0] + p[1] + [338] + p[2] + p[3] + [338]
wmask = [0] * len(p[0]) + [1] * (len(p[1]) + 1) + [0] * len(p[2]) + [1] * (len(p[3]) + 1)
if toks != want: sys.exit("FAIL: sft tokens %s vs %s" % (toks, want))
if mask != wmask: sys.exit("FAIL: sft mask %s vs %s" % (mask, wmask))
print("ok: instruction data: prompt masked, response and EOS counted")
PY
"$lspo" check "$out/sft.bin" > "$out/log" || err "check sft.bin"
grep -q 'loss mask' "$out/log" || err "check does not report the mask"
"$lspo" tokenize --tokenizer "$tok" "$out/d1.txt" "$out/sft.bin" > /dev/null || err "retokenize"
[ -e "$out/sft.bin.mask" ] && err "a stale mask survived an unmasked shard"

# --- threads over documents: the same shard for any thread count ----------------
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
words = "the cat sat on the mat and the dog ate the bone then they slept".split()
with open(out + "/big.jsonl", "w") as f:
    for i in range(5000):   # more than one batch of examples
        q = " ".join(words[(i + k) % len(words)] for k in range(i % 7 + 1))
        f.write(json.dumps({"q": q + " %d?" % i, "a": "it is %d, %s" % (i * 7, words[i % len(words)])}) + "\n")
for i in range(7):
    open(out + "/doc%d.txt" % i, "w").write(" ".join(words[i:]) * (i + 1))
PY
docs=$(for i in 0 1 2 3 4 5 6; do printf '%s ' "$out/doc$i.txt"; done)
for n in 1 3; do
  "$lspo" tokenize --tokenizer "$tok" --threads $n $docs "$out/t$n.bin" > /dev/null || err "tokenize --threads $n"
  "$lspo" tokenize --tokenizer "$tok" --threads $n --bos --jsonl "$out/big.jsonl" --prompt-field q \
    --response-field a "$out/j$n.bin" > "$out/j$n.log" || err "tokenize --jsonl --threads $n"
done
cmp -s "$out/t1.bin" "$out/t3.bin" || err "documents: --threads 1 and 3 differ"
cmp -s "$out/j1.bin" "$out/j3.bin" && cmp -s "$out/j1.bin.mask" "$out/j3.bin.mask" \
  || err "jsonl: --threads 1 and 3 differ"
grep -q '5000 examples' "$out/j3.log" || err "jsonl: $(cat "$out/j3.log")"
echo "ok: --threads 1 and 3 give the same shards and masks"
LSPO_PROGRESS_BYTES=1000 "$lspo" tokenize --tokenizer "$tok" $docs "$out/p.bin" > /dev/null 2> "$out/progress" \
  || err "tokenize with a progress line"
grep -q '^tokenize: .* of .* MB (100%), .* MB/s, [0-9]* tokens' "$out/progress" \
  || err "no progress line: $(cat "$out/progress")"
LSPO_PROGRESS_BYTES=100000000 "$lspo" tokenize --tokenizer "$tok" $docs "$out/p.bin" > /dev/null 2> "$out/progress"
[ -s "$out/progress" ] && err "a progress line for a small input: $(cat "$out/progress")"

# --- malformed inputs: exit 1 --------------------------------------------------
printf '{"model": {"type": "BPE", "vocab": {' > "$out/trunc.json"
printf '{"model": {"type": "WordPiece", "vocab": {}}}' > "$out/wp.json"
expect 1 "trunc.json" -- encode --tokenizer "$out/trunc.json" "$out/a.txt"
expect 1 "model.type 'WordPiece' is not supported" -- tokenize --tokenizer "$out/wp.json" "$out/a.txt" "$out/x.bin"
expect 1 "cannot open" -- encode --tokenizer "$out/nonexistent" "$out/a.txt"
printf 'ab\377cd' > "$out/bad.txt"
expect 1 "invalid UTF-8 at byte 2" -- tokenize --tokenizer "$tok" "$out/bad.txt" "$out/x.bin"
[ -e "$out/x.bin" ] && err "a shard was written for invalid input"
printf '{"q": "a", "a": 5}\n' > "$out/badfield.jsonl"
expect 1 "line 1: field 'a' is not a string" -- tokenize --tokenizer "$tok" --jsonl "$out/badfield.jsonl" --prompt-field q --response-field a "$out/x.bin"
printf '{"q": "a", "a": "b"}\n{"q": \n' > "$out/badjson.jsonl"
expect 1 "badjson.jsonl: line 2" -- tokenize --tokenizer "$tok" --jsonl "$out/badjson.jsonl" --prompt-field q --response-field a "$out/x.bin"
printf '{response} then {prompt}' > "$out/badtpl.txt"
expect 1 "badtpl.txt" -- tokenize --tokenizer "$tok" --jsonl "$out/sft.jsonl" --prompt-field q --response-field a --template "$out/badtpl.txt" "$out/x.bin"
printf '1 2 99999' > "$out/badids.txt"
expect 1 "token id 99999 at position 2" -- decode --tokenizer "$tok" "$out/badids.txt"
printf '1 x 3' > "$out/badids2.txt"
expect 1 "expected a decimal token id" -- decode --tokenizer "$tok" "$out/badids2.txt"

# --- usage errors: exit 2 ------------------------------------------------------
expect 2 "--tokenizer DIR is required" -- encode "$out/a.txt"
expect 2 "--bytes or --tokenizer" -- tokenize "$out/a.txt" "$out/x.bin"
expect 2 "--prompt-field" -- tokenize --tokenizer "$tok" --jsonl "$out/sft.jsonl" "$out/x.bin"
expect 2 "need --jsonl" -- tokenize --tokenizer "$tok" --template "$out/tpl.txt" "$out/a.txt" "$out/x.bin"
expect 2 "IN... OUT" -- tokenize --tokenizer "$tok" "$out/x.bin"
expect 2 "--threads" -- tokenize --tokenizer "$tok" --threads 0 "$out/a.txt" "$out/x.bin"
exit $fail
