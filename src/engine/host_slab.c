/*
 * host_slab.c - the engine's large host buffers (parameter, gradient and
 * moment slabs, lsp's per-matrix G_hat, Delta, M, V): zeroed memory.
 *
 * A real run takes them from starpu_malloc (pinned where StarPU pins, so
 * transfers are asynchronous) and zeroes them.  A simulated run (lspo built
 * against StarPU's SimGrid variant) runs no kernel, so nothing ever reads
 * their contents: they are anonymous mappings that the kernel fills with
 * zero pages on first touch, reserved without swap accounting
 * (MAP_NORESERVE), and the engine writes nothing into them (model.c skips
 * copying parameters in).  A GPT-2 774M then simulates with a few hundred
 * MiB resident instead of the 12 GiB of its slabs, and models larger than
 * the machine's memory can be simulated at all.
 */
#include <string.h>
#include <sys/mman.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"

int model_host_alloc(void **p, size_t bytes, const char *what)
{
	*p = NULL;
	size_t n = bytes ? bytes : 1;
#ifdef STARPU_SIMGRID
	void *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		LSPO_FAIL(LSPO_ENOMEM, "cannot reserve %zu MiB of address space for %s", n >> 20, what);
	*p = m;
#else
	if (starpu_malloc(p, n) != 0) {
		*p = NULL;
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate %zu MiB of pinned memory for %s", n >> 20, what);
	}
	memset(*p, 0, n);
#endif
	return LSPO_OK;
}

void model_host_free(void *p, size_t bytes)
{
	if (!p)
		return;
#ifdef STARPU_SIMGRID
	munmap(p, bytes ? bytes : 1);
#else
	(void)bytes;
	starpu_free(p);
#endif
}

int model_host_untouched(void)
{
#ifdef STARPU_SIMGRID
	return 1;
#else
	return 0;
#endif
}
