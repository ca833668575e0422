# ckpt: files of this area (see Makefile.am).
# Checkpoints (safetensors + config.json), GPT-2 init, token shards, loader.
liblspo_la_SOURCES += \
	src/atomic_file.c src/atomic_file.h src/mapped_file.c src/mapped_file.h \
	src/safetensors.c src/safetensors.h \
	src/engine/ckpt.c src/data.c
lspo_SOURCES += src/cli/cmd_data.c
check_PROGRAMS += tests/test_ckpt tests/test_ckpt_bad tests/test_data
TESTS += tests/test_ckpt tests/test_ckpt_bad tests/test_data
tests_test_ckpt_LDADD = $(LDADD) $(JANSSON_LIBS)
EXTRA_DIST += tests/st_craft.h tests/fuzz
TESTS += tests/test_bad_input.sh
dist_check_SCRIPTS += tests/test_bad_input.sh tests/craft_inputs.py
