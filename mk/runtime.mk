# runtime: src/ (status, log, lr schedule), src/runtime/ (the StarPU context, the lspo policy in
# src/runtime/sched/, task tags, tracing, selftest, SimGrid task costs), the matmul codelet, the CLI entry.

# --- from the former mk/core.mk
# Foundation: context, logging, scheduling policy, matmul, CLI, first tests.
liblspo_la_SOURCES += \
	src/internal.h src/status.c src/log.c src/runtime/ctx.c src/runtime/selftest.c \
	src/lr_schedule.c src/runtime/sim_cost.c \
	src/runtime/sched/sched_lspo.c src/runtime/sched/sched_lspo.h \
	codelets/codelet_util.h \
	codelets/matmul.c codelets/matmul.h
CUDA_SOURCES += codelets/matmul.cu
lspo_SOURCES += src/cli/lspo.c src/cli/cli.h src/cli/cmd_info.c
check_PROGRAMS += tests/test_matmul tests/test_matmul_cuda tests/test_graph tests/test_sched_prio tests/test_ctx tests/test_lr_schedule
TESTS += tests/test_matmul tests/test_matmul_cuda tests/test_graph tests/test_sched_prio tests/test_ctx tests/test_lr_schedule tests/test_fxt_trace.sh
dist_check_SCRIPTS += tests/test_fxt_trace.sh
EXTRA_DIST += tests/common.h tests/gate.h tests/lsan.supp

# --- from the former mk/offload.mk
# offload: files of this area (see Makefile.am).
# sched
liblspo_la_SOURCES += src/runtime/sched/sched_lspo_opts.c
check_PROGRAMS += tests/test_sched_lspo
TESTS += tests/test_sched_lspo

# --- from the former mk/tags.mk
# tags: files of this area (see Makefile.am).
# Task tags "<op>:L<layer>:<stage>": one format, one parse, the stage words
# and the interning table of task names (src/runtime/tag.h); the engine names tasks
# with them, the lspo policy and the trace read them.
liblspo_la_SOURCES += src/runtime/tag.c src/runtime/tag.h
check_PROGRAMS += tests/test_tag
TESTS += tests/test_tag
TESTS += tests/test_tags96.sh
dist_check_SCRIPTS += tests/test_tags96.sh

# --- from the former mk/trace.mk
# trace: files of this area (see Makefile.am).
liblspo_la_SOURCES += src/runtime/trace.c src/runtime/trace.h
TESTS += tests/test_trace.sh
dist_check_SCRIPTS += tests/test_trace.sh
EXTRA_DIST += bench/compare-schedules bench/simulate-schedules tests/test_sim.sh
check_PROGRAMS += tests/test_trace_cp
TESTS += tests/test_trace_cp
TESTS += tests/test_paje.sh
dist_check_SCRIPTS += tests/test_paje.sh

# --- memory (issue 13): peaks per memory node, evictions per step
liblspo_la_SOURCES += src/runtime/memstat.c src/runtime/memstat.h
liblspo_la_SOURCES += src/runtime/sched/sched_lspo_mem.c
