# Foundation: context, logging, scheduling policy, matmul, CLI, first tests.
liblspo_la_SOURCES += \
	src/internal.h src/status.c src/log.c src/ctx.c src/selftest.c \
	src/lr_schedule.c src/sim_cost.c \
	src/sched/sched_lspo.c src/sched/sched_lspo.h \
	codelets/codelet_util.h \
	codelets/matmul.c codelets/matmul.h
CUDA_SOURCES += codelets/matmul.cu
lspo_SOURCES += src/cli/lspo.c src/cli/cli.h src/cli/cmd_info.c
check_PROGRAMS += tests/test_matmul tests/test_matmul_cuda tests/test_graph tests/test_sched_prio tests/test_ctx tests/test_lr_schedule
TESTS += tests/test_matmul tests/test_matmul_cuda tests/test_graph tests/test_sched_prio tests/test_ctx tests/test_lr_schedule tests/test_fxt_trace.sh
dist_check_SCRIPTS += tests/test_fxt_trace.sh
EXTRA_DIST += tests/common.h tests/gate.h tests/lsan.supp
