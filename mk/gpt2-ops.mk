# gpt2-ops: files of this area (see Makefile.am).
# Encoder, layernorm, gelu, residual/accumulate and fused softmax + cross-entropy.
liblspo_la_SOURCES += \
	codelets/gpt2_ops_util.h \
	codelets/encoder.c codelets/encoder.h \
	codelets/layernorm.c codelets/layernorm.h \
	codelets/gelu.c codelets/gelu.h \
	codelets/residual.c codelets/residual.h \
	codelets/xent.c codelets/xent.h
CUDA_SOURCES += codelets/encoder.cu codelets/layernorm.cu codelets/gelu.cu \
	codelets/residual.cu codelets/xent.cu
EXTRA_DIST += codelets/gpt2_ops_util.cuh
check_PROGRAMS += tests/test_ops_a tests/test_ops_a_cuda
TESTS += tests/test_ops_a tests/test_ops_a_cuda
