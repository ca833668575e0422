# lsp-learn: projector checks and learning as StarPU tasks (issue 12):
# calibration sums, pair errors, Adam iterations of the learning, moment
# re-projection and publication, one chain per pair (src/engine/lsp_learn.c).
liblspo_la_SOURCES += src/engine/lsp_learn.c src/engine/lsp_learn.h \
	codelets/calib_add.c codelets/calib_add.h \
	codelets/proj_error.c codelets/proj_error.h \
	codelets/proj_learn.c codelets/proj_learn.h \
	codelets/proj_publish.c codelets/proj_publish.h
CUDA_SOURCES += codelets/calib_add.cu codelets/proj_error.cu codelets/proj_learn.cu
EXTRA_DIST += codelets/proj_ell.cuh
check_PROGRAMS += tests/test_sched_learn tests/test_proj_tasks
TESTS += tests/test_sched_learn tests/test_proj_tasks
EXTRA_DIST += bench/idle-share
