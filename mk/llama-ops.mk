# llama-ops: files of this area (see Makefile.am).
# The ops of Llama-family models: RMSNorm, rotary embedding, SwiGLU and
# causal attention with grouped K/V heads (proj_apply_t, for (out, in)
# weights, is in mk/projector.mk's proj_apply files).
liblspo_la_SOURCES += \
	codelets/rmsnorm.c codelets/rmsnorm.h \
	codelets/rope.c codelets/rope.h \
	codelets/swiglu.c codelets/swiglu.h \
	codelets/gqa_attention.c codelets/gqa_attention.h
CUDA_SOURCES += codelets/rmsnorm.cu codelets/rope.cu codelets/swiglu.cu codelets/gqa_attention.cu
check_PROGRAMS += tests/test_llama_ops tests/test_llama_ops_cuda
TESTS += tests/test_llama_ops tests/test_llama_ops_cuda
