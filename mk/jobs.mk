# jobs: files of this area (see Makefile.am).
# Checkpoint directories (manifest, atomic publish, verification) and the
# CLI's job safety: signals, fail-before-training checks, --config.
liblspo_la_SOURCES += src/ckpt_dir.c
lspo_SOURCES += src/cli/job.c
lspo_LDADD += $(JANSSON_LIBS)
TESTS += tests/test_jobs.sh tests/test_fault.sh
dist_check_SCRIPTS += tests/test_jobs.sh tests/test_fault.sh
TESTS += tests/test_slurm.sh
dist_check_SCRIPTS += tests/test_slurm.sh
EXTRA_DIST += examples
check_PROGRAMS += tests/test_ckpt_dir
TESTS += tests/test_ckpt_dir
