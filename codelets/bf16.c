/*
 * bf16.c - bf16 operands of the fp32 codelets on CPU workers (bf16.h):
 * widen on load, run the fp32 kernel, round to nearest even on store.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "bf16.h"

int lspo_bf16_buffer(void *buf)
{
	const struct starpu_matrix_interface *mi = buf;
	return mi->id == STARPU_MATRIX_INTERFACE_ID && mi->elemsize == sizeof(uint16_t);
}

static void widen(float *dst, const struct starpu_matrix_interface *mi)
{
	const uint16_t *src = (const uint16_t *)mi->ptr;
	for (uint32_t r = 0; r < mi->ny; r++)
		for (uint32_t c = 0; c < mi->nx; c++)
			dst[(size_t)r * mi->nx + c] = lspo_bf16_to_f32(src[(size_t)r * mi->ld + c]);
}

static void narrow(const struct starpu_matrix_interface *mi, const float *src)
{
	uint16_t *dst = (uint16_t *)mi->ptr;
	for (uint32_t r = 0; r < mi->ny; r++)
		for (uint32_t c = 0; c < mi->nx; c++)
			dst[(size_t)r * mi->ld + c] = lspo_bf16_from_f32(src[(size_t)r * mi->nx + c]);
}

/* The task the calling worker runs; NULL outside StarPU (a test calling a
 * kernel directly: StarPU's thread-local keys do not exist then). */
static struct starpu_task *current_task(void)
{
	return starpu_is_initialized() ? starpu_task_get_current() : NULL;
}

int lspo_bf16_nbuffers(const struct starpu_codelet *cl)
{
	struct starpu_task *task = current_task();
	if (task)
		return STARPU_TASK_GET_NBUFFERS(task);
	return cl->nbuffers == STARPU_VARIABLE_NBUFFERS ? 3 : cl->nbuffers;
}

int lspo_bf16_mode(const struct starpu_codelet *cl, int i)
{
	struct starpu_task *task = current_task();
	if (task)
		return (int)STARPU_TASK_GET_MODE(task, i);
	return cl->nbuffers == STARPU_VARIABLE_NBUFFERS ? (int)STARPU_RW : (int)cl->modes[i];
}

void lspo_bf16_cpu_call(lspo_kernel_func fn, const struct starpu_codelet *cl, void *buffers[], void *cl_arg)
{
	int n = lspo_bf16_nbuffers(cl), any = 0;
	for (int i = 0; i < n && !any; i++)
		any = lspo_bf16_buffer(buffers[i]);
	if (!any) {
		fn(buffers, cl_arg);
		return;
	}
	struct starpu_matrix_interface *copy = calloc((size_t)n, sizeof(*copy));
	void **bufs = calloc((size_t)n, sizeof(*bufs));
	float **f32 = calloc((size_t)n, sizeof(*f32));
	int ok = copy && bufs && f32;
	for (int i = 0; ok && i < n; i++) {
		bufs[i] = buffers[i];
		if (!lspo_bf16_buffer(buffers[i]))
			continue;
		const struct starpu_matrix_interface *mi = buffers[i];
		size_t elems = (size_t)mi->nx * mi->ny;
		f32[i] = malloc((elems ? elems : 1) * sizeof(float));
		ok = f32[i] != NULL;
		if (!ok)
			break;
		if (lspo_bf16_mode(cl, i) & STARPU_R)
			widen(f32[i], mi);
		copy[i] = *mi;
		copy[i].ptr = copy[i].dev_handle = (uintptr_t)f32[i];
		copy[i].offset = 0;
		copy[i].ld = mi->nx;
		copy[i].elemsize = sizeof(float);
		copy[i].allocsize = elems * sizeof(float);
		bufs[i] = &copy[i];
	}
	if (!ok) {   /* a codelet cannot return an error: stop, as StarPU does */
		fprintf(stderr, "lspo: %s: out of memory for the float32 copies of bf16 operands\n", cl->name);
		abort();
	}
	fn(bufs, cl_arg);
	for (int i = 0; i < n; i++)
		if (f32[i] && (lspo_bf16_mode(cl, i) & STARPU_W))
			narrow(buffers[i], f32[i]);
	for (int i = 0; i < n; i++)
		free(f32[i]);
	free(f32);
	free(bufs);
	free(copy);
}
