# io: src/io/ (safetensors, mapped and atomic files, token shards and loaders, checkpoint
# directories, tokenizers) and the checkpoint files of src/engine/ckpt.c, with their CLI commands and tests.

# --- from the former mk/ckpt.mk
# ckpt: files of this area (see Makefile.am).
# Checkpoints (safetensors + config.json), GPT-2 init, token shards, loader.
liblspo_la_SOURCES += \
	src/io/atomic_file.c src/io/atomic_file.h src/io/mapped_file.c src/io/mapped_file.h \
	src/io/safetensors.c src/io/safetensors.h \
	src/engine/ckpt.c src/io/data.c
lspo_SOURCES += src/cli/cmd_data.c
check_PROGRAMS += tests/test_ckpt tests/test_ckpt_bad tests/test_data
TESTS += tests/test_ckpt tests/test_ckpt_bad tests/test_data
tests_test_ckpt_LDADD = $(LDADD) $(JANSSON_LIBS)
EXTRA_DIST += tests/st_craft.h tests/fuzz
TESTS += tests/test_bad_input.sh
dist_check_SCRIPTS += tests/test_bad_input.sh tests/craft_inputs.py

# --- from the former mk/jobs.mk
# jobs: files of this area (see Makefile.am).
# Checkpoint directories (manifest, atomic publish, verification) and the
# CLI's job safety: signals, fail-before-training checks, --config.
liblspo_la_SOURCES += src/io/ckpt_dir.c
lspo_SOURCES += src/cli/job.c
lspo_LDADD += $(JANSSON_LIBS)
TESTS += tests/test_jobs.sh tests/test_fault.sh
dist_check_SCRIPTS += tests/test_jobs.sh tests/test_fault.sh
TESTS += tests/test_slurm.sh
dist_check_SCRIPTS += tests/test_slurm.sh
EXTRA_DIST += examples
check_PROGRAMS += tests/test_ckpt_dir
TESTS += tests/test_ckpt_dir

# --- from the former mk/tokenizer.mk
# tokenizer: files of this area (see Makefile.am).
# Hugging Face tokenizer.json (BPE) in C, the encode/decode/tokenize
# commands, and their tests.
liblspo_la_SOURCES += \
	src/io/tokenizer/tok_internal.h src/io/tokenizer/tokenizer.c src/io/tokenizer/tok_load.c \
	src/io/tokenizer/tok_text.c src/io/tokenizer/tok_bpe.c src/io/tokenizer/tok_decode.c
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
