# offload: files of this area (see Makefile.am).
# sched
liblspo_la_SOURCES += src/sched/sched_lspo_opts.c
check_PROGRAMS += tests/test_sched_lspo
TESTS += tests/test_sched_lspo
