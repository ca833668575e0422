# engine: src/engine/ (the step engine, modes, training state) and src/models/ (one file per family).
# GPT-2 engine: the model as a StarPU task graph, training and evaluation.
liblspo_la_SOURCES += src/engine/model.h src/engine/layout.c src/engine/model.c src/engine/offload.c \
	src/engine/train_state.c src/engine/accum.c src/engine/recompute.c src/models/init.h src/models/init.c src/models/gpt2.c src/models/gpt2.h src/models/llama.c \
	codelets/fill.c codelets/fill.h codelets/embedding.c codelets/embedding.h \
	codelets/cast.c codelets/cast.h
CUDA_SOURCES += codelets/fill.cu codelets/cast.cu codelets/embedding.cu
# --dtype bf16: the bf16 working weights, and the codelets' bf16 loads and stores.
liblspo_la_SOURCES += src/engine/dtype.c codelets/bf16.c codelets/bf16.h
CUDA_SOURCES += codelets/bf16.cu
EXTRA_DIST += codelets/bf16.cuh
check_PROGRAMS += tests/test_bf16 tests/test_bf16_cuda
TESTS += tests/test_bf16 tests/test_bf16_cuda tests/test_bf16_cli.sh
dist_check_SCRIPTS += tests/test_bf16_cli.sh
EXTRA_DIST += tests/ref
lspo_SOURCES += src/cli/cmd_train.c
check_PROGRAMS += tests/test_gpt2_golden tests/test_llama_golden tests/test_train_converge
TESTS += tests/test_gpt2_golden tests/test_llama_golden tests/test_train_converge
TESTS += tests/test_cli_train.sh
dist_check_SCRIPTS += tests/test_cli_train.sh
check_PROGRAMS += tests/test_offload tests/test_offload_llama tests/test_masked_loss
TESTS += tests/test_offload tests/test_offload_llama tests/test_masked_loss
check_PROGRAMS += tests/test_lsp_converge
TESTS += tests/test_lsp_converge
# Benchmarks: built by make check, run by bench/bench-step.
check_PROGRAMS += bench/bench_sgemm
bench_bench_sgemm_LDADD = $(BLAS_LIBS)
EXTRA_DIST += bench/gpt2_step_torch.py bench/llama_step_torch.py bench/bench-step bench/bench-lsp-projectors
# Memory footprint (issue 13): `lspo plan` and the line train prints.
liblspo_la_SOURCES += src/engine/footprint.c src/engine/host_slab.c
lspo_SOURCES += src/cli/cmd_plan.c
TESTS += tests/test_mem.sh
dist_check_SCRIPTS += tests/test_mem.sh
EXTRA_DIST += bench/capacity-table
# Gradient accumulation and activation checkpointing (issue 13).
check_PROGRAMS += tests/test_accum
TESTS += tests/test_accum tests/test_accum_cli.sh
dist_check_SCRIPTS += tests/test_accum_cli.sh
# --bf16-update stochastic (issue 13): bf16 weights without an fp32 master.
check_PROGRAMS += tests/test_bf16_sr tests/test_bf16_sr_cuda
TESTS += tests/test_bf16_sr tests/test_bf16_sr_cuda
TESTS += tests/test_bf16_sr_cli.sh
dist_check_SCRIPTS += tests/test_bf16_sr_cli.sh
