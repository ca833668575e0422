/*
 * gpt2_ops_util.h - what the element-wise GPT-2 codelets (encoder, layernorm,
 * gelu, residual, xent) share on the host side: a contiguity check for the
 * submit helpers and an exp that inlines into vectorised loops.
 *
 * Not a public header: only codelets/{encoder,layernorm,gelu,residual,xent}.c
 * and the Llama ops (codelets/{rmsnorm,rope,swiglu,gqa_attention}.c) include it.
 */
#ifndef LSPO_GPT2_OPS_UTIL_H
#define LSPO_GPT2_OPS_UTIL_H

#include <stdint.h>
#include <string.h>

#include "codelet_util.h"

/* Hot loops are written as blocks of LSPO_BLOCK iterations plus a scalar
 * tail: GCC's -O2 vectoriser (the "very cheap" model) only takes loops whose
 * trip count is a multiple of the vector length, and LSPO_IVDEP before the
 * block tells it that the iterations are independent (the arrays may alias,
 * as dlogits and logits do, but only element for element).  Files whose loops
 * contain selects on floats (the clamps of lspo_vexpf: gelu.c, xent.c) also
 * say `#pragma GCC optimize("no-trapping-math")`: with -ftrapping-math, GCC
 * keeps such a float compare as a branch, which stops vectorisation; lspo
 * never enables floating-point traps, so the results are the same. */
#define LSPO_BLOCK 8
#if defined(__GNUC__) && !defined(__clang__)
#define LSPO_IVDEP _Pragma("GCC ivdep")
#else
#define LSPO_IVDEP
#endif

/* The kernels of these ops index rows as ptr + i * cols, so a handle must be
 * contiguous (ld == cols, or a single row): a sub-matrix cut along columns is
 * refused by the submit helpers rather than read wrongly. */
static inline int lspo_handle_contiguous(starpu_data_handle_t h)
{
	/* Read the ld of the home node's interface: that is the registered one
	 * (starpu_matrix_get_local_ld asserts when main memory holds no copy
	 * yet).  A handle registered without memory (home -1) has ld 0 on every
	 * node until StarPU allocates it, always with ld = nx. */
	int home = starpu_data_get_home_node(h);
	if (starpu_matrix_get_ny(h) <= 1 || home < 0)
		return 1;
	const struct starpu_matrix_interface *m = (const struct starpu_matrix_interface *)
		starpu_data_get_interface_on_node(h, (unsigned)home);
	return m->ld == m->nx;
}

/* exp(x) in float, about 1 ulp for x in [-87, 88], with no call and no branch
 * so that loops around it vectorise (libm's expf is a call, which -O2 without
 * -ffast-math never vectorises).  Inputs are clamped to [-87.3, 88.3]: below,
 * the result is ~1e-38 instead of a denormal or 0 (so exp(-inf) ~ 1e-38),
 * which no caller tells apart; above, ~2e38 instead of inf.  NaN gives NaN
 * (selected at the end: the integer conversion only ever sees the clamped,
 * never-NaN value, so there is no undefined behaviour).
 * Method: x = n ln2 + r with |r| <= ln2/2 (round-to-nearest by the 1.5*2^23
 * trick, ln2 split in two for an exact reduction), exp(r) by its degree-6
 * Taylor polynomial (truncation 1.2e-7 relative), 2^n built in the exponent bits. */
static inline float lspo_vexpf(float x)
{
	const float shift = 12582912.0f;            /* 1.5 * 2^23 */
	float xc = x > -87.3f ? x : -87.3f;         /* NaN -> -87.3 */
	xc = xc < 88.3f ? xc : 88.3f;               /* n <= 127: 2^n stays finite */
	float t = xc * 1.44269504088896341f + shift;
	float n = t - shift;                        /* nearest integer to xc / ln2 */
	float r = xc - n * 0.693359375f;            /* ln2 high part: exact product */
	r = r - n * -2.12194440e-4f;                /* ln2 low part */
	float p = 1.0f / 720.0f;
	p = p * r + 1.0f / 120.0f;
	p = p * r + 1.0f / 24.0f;
	p = p * r + 1.0f / 6.0f;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	int32_t bits = ((int32_t)n + 127) * (1 << 23);
	float scale;
	memcpy(&scale, &bits, sizeof(scale));
	return x != x ? x : p * scale;
}

#endif
