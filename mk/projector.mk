# projector: files of this area (see Makefile.am).
# Learned (d, r)-sparse projectors: compress (project_fwd/bwd), decompress and
# apply (proj_apply), subspace Adam, projector learning and refresh.
liblspo_la_SOURCES += \
	codelets/project_fwd.c codelets/project_fwd.h \
	codelets/project_bwd.c codelets/project_bwd.h \
	codelets/proj_apply.c codelets/proj_apply.h \
	codelets/subspace_adam.c codelets/subspace_adam.h
CUDA_SOURCES += codelets/project_fwd.cu codelets/project_bwd.cu codelets/proj_apply.cu
liblspo_la_SOURCES += src/projector.c src/projector.h src/projector_learn.c
check_PROGRAMS += tests/test_proj_codelets tests/test_proj_codelets_cuda
TESTS += tests/test_proj_codelets tests/test_proj_codelets_cuda
check_PROGRAMS += tests/test_proj_learn
TESTS += tests/test_proj_learn
# Built by `make check` (or `make bench/bench_projector`) but never run by it.
check_PROGRAMS += bench/bench_projector
