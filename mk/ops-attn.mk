# attention, adamw, gradnorm: files of this area (see Makefile.am).
liblspo_la_SOURCES += \
	codelets/attention.c codelets/attention.h \
	codelets/adamw.c codelets/adamw.h \
	codelets/gradnorm.c codelets/gradnorm.h
CUDA_SOURCES += codelets/attention.cu codelets/adamw.cu codelets/gradnorm.cu
check_PROGRAMS += tests/test_ops_b tests/test_ops_b_cuda
TESTS += tests/test_ops_b tests/test_ops_b_cuda
