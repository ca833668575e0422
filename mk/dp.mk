# dp: data parallelism over MPI ranks with StarPU-MPI (issue 14): the ring
# all-reduce of each layer's gradients in the step's task graph
# (src/engine/dp.c), the bucket codelets, and the 2-rank test.  dp.c
# compiles without MPI too (its API then reports LSPO_ENOTSUP), so the
# library and the CLI are the same in both builds.
liblspo_la_SOURCES += src/engine/dp.c codelets/bucket.c codelets/bucket.h
lspo_SOURCES += src/cli/dp_watch.c
if LSPO_HAVE_MPI
liblspo_la_LIBADD += $(STARPUMPI_LIBS) $(MPI_LIBS)
endif
check_PROGRAMS += tests/test_bucket
TESTS += tests/test_bucket tests/test_mpi.sh
dist_check_SCRIPTS += tests/test_mpi.sh
EXTRA_DIST += examples/slurm/finetune-multinode.sbatch
