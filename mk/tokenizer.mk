# tokenizer: files of this area (see Makefile.am).
# Hugging Face tokenizer.json (BPE) in C, the encode/decode/tokenize
# commands, and their tests.
liblspo_la_SOURCES += \
	src/tokenizer/tok_internal.h src/tokenizer/tokenizer.c src/tokenizer/tok_load.c \
	src/tokenizer/tok_text.c src/tokenizer/tok_bpe.c src/tokenizer/tok_decode.c
liblspo_la_LIBADD += $(PCRE2_LIBS) $(UTF8PROC_LIBS)
lspo_SOURCES += src/cli/cmd_tok.c
lspo_LDADD += $(JANSSON_LIBS)
check_PROGRAMS += tests/tok_ref_check
tests_tok_ref_check_LDADD = $(LDADD) $(JANSSON_LIBS)
TESTS += tests/test_tokenizer_ref.sh
dist_check_SCRIPTS += tests/test_tokenizer_ref.sh
EXTRA_DIST += tests/ref/tokenizer
check_PROGRAMS += tests/test_tokenizer
TESTS += tests/test_tokenizer
TESTS += tests/test_tokenize_cli.sh
dist_check_SCRIPTS += tests/test_tokenize_cli.sh
# Built by `make check`, run by bench/bench-tokenizer.
check_PROGRAMS += bench/bench_tokenizer
bench_bench_tokenizer_LDADD = $(LDADD) -lpthread
EXTRA_DIST += bench/bench-tokenizer bench/tokenizer_ref_bench.js
