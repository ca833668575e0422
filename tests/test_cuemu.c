/*
 * test_cuemu.c - every CUDA entry point of every codelet, run on the CPU by
 * the CUDA emulator (tests/cuemu), against the codelet's own CPU function
 * (cl_x.cpu_funcs[0]) on identical buffers: faked StarPU matrix and vector
 * interfaces over two copies of the same data.  Every buffer is compared
 * afterwards (inputs and the padding past each row included; scratch
 * buffers excepted), and the emulator must have reported nothing (launch
 * limits, divergent barriers, shuffle rules, CUDA and cuBLAS errors).
 *
 * Shapes: those of the CUDA tests (test_ops_a_cuda, test_ops_b_cuda,
 * test_matmul_cuda, test_proj_codelets_cuda); the largest (more than 65535
 * rows, V = 50257, GPT-2's attention) only with LSPO_TEST_LONG=1.  Each case
 * runs under three schedules: warps as far as they go in forward order,
 * lockstep in reverse order, warps in random order; CUEMU_SCHEDULE and
 * CUEMU_ORDER (tests/cuemu/cuemu_api.h) choose a single one instead.
 *
 * Then the harness tests itself: rule kernels (tests/cuemu/selftest.cu)
 * whose errors must be reported, and copies of real kernels with an injected
 * bug (mk/cuemu.mk makes them): a missing barrier, a shared-memory overrun
 * (in a child process: it faults) and a wrong cuBLAS leading dimension.
 *
 * No StarPU is started and no CUDA is needed.
 */
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <starpu.h>

#include "adamw.h"
#include "attention.h"
#include "cast.h"
#include "common.h"
#include "cuemu/cuemu_api.h"
#include "embedding.h"
#include "encoder.h"
#include "fill.h"
#include "gelu.h"
#include "gradnorm.h"
#include "layernorm.h"
#include "matmul.h"
#include "proj_apply.h"
#include "project_bwd.h"
#include "project_fwd.h"
#include "residual.h"
#include "xent.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"
#include "gqa_attention.h"
#include "bf16.h"
#include "calib_add.h"
#include "proj_error.h"
#include "proj_learn.h"
#include "projector.h"

/* The emulated entry points: tests/cuemu/cu2cpp renames f to cuemu_f. */
#define EMULATED(f) void cuemu_##f(void *buffers[], void *cl_arg);
EMULATED(adamw_cuda)
EMULATED(attention_forward_cuda)
EMULATED(attention_backward_cuda)
EMULATED(cast_f32_bf16_cuda)
EMULATED(cast_bf16_f32_cuda)
EMULATED(embedding_forward_cuda)
EMULATED(embedding_backward_cuda)
EMULATED(encoder_forward_cuda)
EMULATED(encoder_backward_cuda)
EMULATED(fill_cuda)
EMULATED(gelu_forward_cuda)
EMULATED(gelu_backward_cuda)
EMULATED(sumsq_cuda)
EMULATED(clip_scale_cuda)
EMULATED(layernorm_forward_cuda)
EMULATED(layernorm_backward_cuda)
EMULATED(matmul_cuda)
EMULATED(proj_apply_cuda)
EMULATED(project_fwd_cuda)
EMULATED(project_bwd_cuda)
EMULATED(residual_forward_cuda)
EMULATED(accumulate_cuda)
EMULATED(xent_forward_cuda)
EMULATED(xent_backward_cuda)
EMULATED(rmsnorm_forward_cuda)
EMULATED(rmsnorm_backward_cuda)
EMULATED(rope_cuda)
EMULATED(swiglu_forward_cuda)
EMULATED(swiglu_backward_cuda)
EMULATED(gqa_attention_forward_cuda)
EMULATED(gqa_attention_backward_cuda)
EMULATED(proj_apply_t_cuda)
EMULATED(calib_add_cuda)
EMULATED(proj_error_cuda)
EMULATED(proj_learn_cuda)
/* The mutants of the self-test (mk/cuemu.mk). */
EMULATED(mut_barrier_sumsq_cuda)
EMULATED(mut_smem_attention_forward_cuda)
EMULATED(mut_ld_matmul_cuda)
/* tests/cuemu/selftest.cu */
int cuemu_selftest_rules(void);

/* ---------------------------------------------------------------------------
 * Cases: buffers in two copies, the CPU function on one, the emulated CUDA
 * function on the other. */

enum { F32, I32, F64, U16, BF16 };   /* U16: compared bit for bit; BF16: as values */
static const size_t type_size[] = { 4, 4, 8, 2, 2 };
#define MAXBUF 320

struct tbuf {
	int type, rows, cols, ld, vector, scratch;
	size_t n;                   /* elements allocated: rows * ld */
	void *data[2];              /* [0] CPU function, [1] emulated */
	struct starpu_matrix_interface mat[2];
	struct starpu_vector_interface vec[2];
};

struct tcase {
	int nb;
	double min_scale;           /* compare: ||cpu||_inf counts as at least this */
	struct tbuf b[MAXBUF];
};

static uint64_t seed = 2026;
static double worst;            /* largest relative difference seen, and where */
static char worst_case[200];
static int ncases, long_tests;

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(TEST_ERROR);
	}
	return p;
}

/* A (rows, cols) matrix with row stride ld, random contents (U(-1, 1) for
 * floats, random bits for bf16, 0 for ints); returns the data to set up. */
static void *tc_mat(struct tcase *c, int type, int rows, int cols, int ld)
{
	if (c->nb == MAXBUF) {
		fprintf(stderr, "test_cuemu: more than %d buffers in a case\n", MAXBUF);
		exit(TEST_ERROR);
	}
	struct tbuf *b = &c->b[c->nb++];
	memset(b, 0, sizeof(*b));
	b->type = type;
	b->rows = rows;
	b->cols = cols;
	b->ld = ld;
	b->n = (size_t)rows * ld;
	b->data[0] = xmalloc(b->n * type_size[type]);
	b->data[1] = xmalloc(b->n * type_size[type]);
	for (size_t i = 0; i < b->n; i++) {
		if (type == F32)
			((float *)b->data[0])[i] = test_uniform(&seed);
		else if (type == F64)
			((double *)b->data[0])[i] = test_uniform(&seed);
		else if (type == U16)
			((uint16_t *)b->data[0])[i] = (uint16_t)(test_uniform(&seed) * 32768.0f + 32768.0f);
		else if (type == BF16)
			((uint16_t *)b->data[0])[i] = lspo_bf16_from_f32(test_uniform(&seed));
		else
			((int32_t *)b->data[0])[i] = 0;
	}
	return b->data[0];
}

static float *tc_f32(struct tcase *c, int rows, int cols)
{
	return tc_mat(c, F32, rows, cols, cols);
}

/* A STARPU_SCRATCH matrix or vector: NaN on both sides, not compared. */
static void tc_scratch(struct tcase *c, int type, int rows, int cols, int vector)
{
	tc_mat(c, type, rows, cols, cols);
	struct tbuf *b = &c->b[c->nb - 1];
	b->scratch = 1;
	b->vector = vector;
	memset(b->data[0], 0xff, b->n * type_size[type]);
}

/* Token ids (or ELL indices): an int32 matrix of values in [0, v). */
static int32_t *tc_ids(struct tcase *c, int rows, int cols, int v)
{
	int32_t *t = tc_mat(c, I32, rows, cols, cols);
	for (size_t i = 0; i < (size_t)rows * cols; i++) {
		int x = (int)((test_uniform(&seed) + 1.0f) * 0.5f * (float)v);
		t[i] = x < 0 ? 0 : (x >= v ? v - 1 : x);
	}
	return t;
}

/* ELL indices: rows x r distinct columns in [0, d) per row. */
static int32_t *tc_ell(struct tcase *c, int rows, int r, int d)
{
	int32_t *t = tc_mat(c, I32, rows, r, r);
	for (int i = 0; i < rows; i++)
		for (int k = 0; k < r; k++) {
			int x, dup;
			do {
				x = (int)((test_uniform(&seed) + 1.0f) * 0.5f * (float)d);
				x = x < 0 ? 0 : (x >= d ? d - 1 : x);
				dup = 0;
				for (int j = 0; j < k; j++)
					dup |= t[i * r + j] == x;
			} while (dup);
			t[i * r + k] = x;
		}
	return t;
}

static void scale(float *x, size_t n, float s)
{
	for (size_t i = 0; i < n; i++)
		x[i] *= s;
}

/* ||emu - cpu||_inf / ||cpu||_inf over the (rows, cols) part; the padding
 * past cols must be equal bit for bit.  NaN where the CPU has none: inf. */
static double compare(const struct tbuf *b, double min_scale, int *pad_diff)
{
	double num = 0, den = 0;
	size_t es = type_size[b->type];
	*pad_diff = 0;
	for (int r = 0; r < b->rows; r++) {
		const char *c = (const char *)b->data[0] + (size_t)r * b->ld * es;
		const char *e = (const char *)b->data[1] + (size_t)r * b->ld * es;
		if (memcmp(c + (size_t)b->cols * es, e + (size_t)b->cols * es, (size_t)(b->ld - b->cols) * es))
			*pad_diff = 1;
		for (int j = 0; j < b->cols; j++) {
			double x, y;
			if (b->type == F32) {
				x = ((const float *)c)[j];
				y = ((const float *)e)[j];
			} else if (b->type == F64) {
				x = ((const double *)c)[j];
				y = ((const double *)e)[j];
			} else if (b->type == U16) {
				x = ((const uint16_t *)c)[j];
				y = ((const uint16_t *)e)[j];
			} else if (b->type == BF16) {
				x = lspo_bf16_to_f32(((const uint16_t *)c)[j]);
				y = lspo_bf16_to_f32(((const uint16_t *)e)[j]);
			} else {
				x = ((const int32_t *)c)[j];
				y = ((const int32_t *)e)[j];
			}
			if (isnan(x) || isnan(y)) {
				if (isnan(x) != isnan(y))
					num = INFINITY;
				continue;
			}
			if (isinf(x) || isinf(y)) {
				if (x != y)
					num = INFINITY;
				continue;
			}
			double d = fabs(x - y);
			if (b->type == I32 || b->type == U16)
				d = d != 0 ? INFINITY : 0;   /* exact */
			num = fmax(num, d);
			den = fmax(den, fabs(x));
		}
	}
	return num == 0 ? 0 : num / fmax(den, fmax(min_scale, 1e-30));
}

/* Runs cl's CPU function and `emu` on copies of the case's buffers and
 * compares them; returns the largest relative difference (inf when the
 * emulator reported anything).  Frees the buffers. */
static double tc_run_quiet(struct tcase *c, const struct starpu_codelet *cl, void (*emu)(void *[], void *),
                           void *arg, char *why, size_t whylen)
{
	void *bufs[2][MAXBUF];
	for (int i = 0; i < c->nb; i++) {
		struct tbuf *b = &c->b[i];
		memcpy(b->data[1], b->data[0], b->n * type_size[b->type]);
		for (int s = 0; s < 2; s++) {
			if (b->vector) {
				struct starpu_vector_interface *v = &b->vec[s];
				memset(v, 0, sizeof(*v));
				v->id = STARPU_VECTOR_INTERFACE_ID;
				v->ptr = (uintptr_t)b->data[s];
				v->nx = (uint32_t)b->n;
				v->elemsize = type_size[b->type];
				v->allocsize = b->n * type_size[b->type];
				bufs[s][i] = v;
			} else {
				struct starpu_matrix_interface *m = &b->mat[s];
				memset(m, 0, sizeof(*m));
				m->id = STARPU_MATRIX_INTERFACE_ID;
				m->ptr = (uintptr_t)b->data[s];
				m->nx = (uint32_t)b->cols;
				m->ny = (uint32_t)b->rows;
				m->ld = (uint32_t)b->ld;
				m->elemsize = type_size[b->type];
				m->allocsize = b->n * type_size[b->type];
				bufs[s][i] = m;
			}
		}
	}
	cuemu_clear_reports();
	cl->cpu_funcs[0](bufs[0], arg);
	emu(bufs[1], arg);
	double err = 0;
	why[0] = 0;
	if (cuemu_report_count()) {
		err = INFINITY;
		snprintf(why, whylen, "%d emulator report(s), the first: %s", cuemu_report_count(), cuemu_report_text(0));
	}
	for (int i = 0; i < c->nb; i++) {
		struct tbuf *b = &c->b[i];
		if (!b->scratch) {
			int pad;
			double e = compare(b, c->min_scale, &pad);
			if (pad)
				e = INFINITY;
			if (!(e <= err)) {
				err = e;
				snprintf(why, whylen, "buffer %d (%d x %d, ld %d)%s: relative difference %.3g", i, b->rows,
				         b->cols, b->ld, pad ? " written past its columns" : "", e);
			}
		}
		free(b->data[0]);
		free(b->data[1]);
	}
	c->nb = 0;
	c->min_scale = 0;
	return err;
}

static void tc_run(struct tcase *c, const struct starpu_codelet *cl, void (*emu)(void *[], void *), void *arg,
                   double tol, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void tc_run(struct tcase *c, const struct starpu_codelet *cl, void (*emu)(void *[], void *), void *arg,
                   double tol, const char *fmt, ...)
{
	char name[160], why[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	double e = tc_run_quiet(c, cl, emu, arg, why, sizeof(why));
	CHECK(e <= tol, "%s [%s]: %s (tolerance %.0e)", name, cuemu_schedule_name(), why, tol);
	if (!(e <= worst)) {
		worst = e;
		snprintf(worst_case, sizeof(worst_case), "%s [%s]", name, cuemu_schedule_name());
	}
	ncases++;
}

/* ---------------------------------------------------------------------------
 * The codelets */

static struct tcase tc;

static void case_adamw(int rows, int cols, int ld, int t, float wd, float gs)
{
	struct lspo_adamw_hparams h = { .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
	                                .weight_decay = wd, .t = t };
	tc_mat(&tc, F32, rows, cols, ld);                   /* p */
	tc_mat(&tc, F32, rows, cols, ld + 1);               /* grad */
	tc_mat(&tc, F32, rows, cols, ld);                   /* m */
	float *v = tc_mat(&tc, F32, rows, cols, ld);        /* v >= 0 */
	for (size_t i = 0; i < (size_t)rows * ld; i++)
		v[i] = fabsf(v[i]) * 0.01f;
	float *clip = tc_f32(&tc, 1, 2);
	clip[0] = 123.0f;
	clip[1] = gs;
	tc_run(&tc, &cl_adamw, cuemu_adamw_cuda, &h, 1e-6, "adamw %dx%d ld %d t=%d wd=%g scale=%g", rows, cols, ld,
	       t, wd, gs);
}

/* The non-finite guard: a non-finite norm in clip[0] (as clip_scale writes
 * it, with scale 0) leaves p, m and v untouched on both sides (test_ops_b
 * checks the CPU side against the inputs). */
static void case_adamw_skip(int rows, int cols, float norm)
{
	struct lspo_adamw_hparams h = { .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
	                                .weight_decay = 0.1f, .t = 2 };
	tc_mat(&tc, F32, rows, cols, cols);                 /* p */
	float *g = tc_mat(&tc, F32, rows, cols, cols);      /* grad, one NaN */
	g[(size_t)rows * cols / 2] = NAN;
	tc_mat(&tc, F32, rows, cols, cols);                 /* m */
	float *v = tc_mat(&tc, F32, rows, cols, cols);
	for (size_t i = 0; i < (size_t)rows * cols; i++)
		v[i] = fabsf(v[i]) * 0.01f;
	float *clip = tc_f32(&tc, 1, 2);
	clip[0] = norm;
	clip[1] = 0.0f;
	tc_run(&tc, &cl_adamw, cuemu_adamw_cuda, &h, 0, "adamw %dx%d skipped (norm %g)", rows, cols, (double)norm);
}

/* --bf16-update stochastic: AdamW on a bf16 param, rounded back
 * stochastically; the CPU codelet and the kernel give the same bits
 * (U16: compared bit for bit), strided or contiguous (the kernel then runs
 * one long row: the element indices must stay r cols + c). */
static void case_adamw_sr(int rows, int cols, int ld, int t, float wd, float lr)
{
	struct lspo_adamw_hparams h = { .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
	                                .weight_decay = wd, .t = t, .sr_key = lspo_sr_key(3, (uint64_t)t, 17) };
	uint16_t *p = tc_mat(&tc, U16, rows, cols, ld);     /* p, bf16 values */
	for (size_t i = 0; i < (size_t)rows * ld; i++)
		p[i] = lspo_bf16_from_f32(test_uniform(&seed));
	tc_mat(&tc, F32, rows, cols, ld == cols ? ld : ld + 1);   /* grad */
	tc_mat(&tc, F32, rows, cols, ld);                   /* m */
	float *v = tc_mat(&tc, F32, rows, cols, ld);        /* v >= 0 */
	for (size_t i = 0; i < (size_t)rows * ld; i++)
		v[i] = fabsf(v[i]) * 0.01f;
	float *clip = tc_f32(&tc, 1, 2);
	clip[0] = 1.0f;
	clip[1] = 0.5f;
	tc_run(&tc, &cl_adamw, cuemu_adamw_cuda, &h, 0, "adamw bf16 stochastic %dx%d ld %d t=%d wd=%g lr=%g", rows,
	       cols, ld, t, wd, lr);
}

/* proj_apply (transposed 0) and proj_apply_t (1) on a bf16 W, rounded back
 * stochastically: bit for bit. */
static void case_proj_apply_sr(int m, int n, int d, int r, int transposed)
{
	struct lspo_proj_apply_args a = { -0.7f, 0.01f, lspo_sr_key(3, 2, (uint64_t)(m * n)) };
	uint16_t *w = tc_mat(&tc, U16, m, n, n);
	for (size_t i = 0; i < (size_t)m * n; i++)
		w[i] = lspo_bf16_from_f32(test_uniform(&seed));
	tc_ell(&tc, m, r, d);
	tc_f32(&tc, m, r);
	tc_ell(&tc, n, r, d);
	tc_f32(&tc, n, r);
	float *delta = tc_f32(&tc, d, d);
	scale(delta, (size_t)d * d, 1e-3f);   /* updates about the weights' bf16 spacing */
	tc_scratch(&tc, F32, d, n, 0);
	tc_run(&tc, transposed ? &cl_proj_apply_t : &cl_proj_apply,
	       transposed ? cuemu_proj_apply_t_cuda : cuemu_proj_apply_cuda, &a, 0,
	       "proj_apply%s bf16 stochastic m=%d n=%d d=%d r=%d", transposed ? "_t" : "", m, n, d, r);
}

static void case_attention(int B, int T, int C, int NH)
{
	struct lspo_attention_args a = { B, NH };
	float *qkv = tc_f32(&tc, B * T, 3 * C);
	scale(qkv, (size_t)B * T * 3 * C, 2.0f);
	tc_f32(&tc, B * T, C);
	tc_f32(&tc, 1, B * NH * T);
	tc_run(&tc, &cl_attention_fwd, cuemu_attention_forward_cuda, &a, 1e-5, "attention fwd B=%d T=%d C=%d NH=%d",
	       B, T, C, NH);

	/* The backward on the forward's results. */
	tc_f32(&tc, B * T, C);                              /* dout */
	qkv = tc_f32(&tc, B * T, 3 * C);
	scale(qkv, (size_t)B * T * 3 * C, 2.0f);
	float *out = tc_f32(&tc, B * T, C), *lse = tc_f32(&tc, 1, B * NH * T);
	attention_forward_cpu(out, lse, qkv, B, T, C, NH);
	tc_f32(&tc, B * T, 3 * C);                          /* dqkv */
	tc_run(&tc, &cl_attention_bwd, cuemu_attention_backward_cuda, &a, 1e-5,
	       "attention bwd B=%d T=%d C=%d NH=%d", B, T, C, NH);
}

static void case_cast(size_t n)
{
	int rows = n > 1000 ? 7 : 1, cols = (int)(n / (size_t)rows);
	float *x = tc_f32(&tc, rows, cols);
	scale(x, (size_t)rows * cols, 1e3f);
	if (cols > 4) {   /* NaN, inf and a value that rounds up to the next exponent */
		x[0] = NAN;
		x[1] = INFINITY;
		x[2] = -INFINITY;
		x[3] = 0x1.fffffep+3f;
	}
	tc_mat(&tc, U16, rows, cols, cols);
	tc_run(&tc, &cl_cast_f32_bf16, cuemu_cast_f32_bf16_cuda, NULL, 0, "cast f32->bf16 %dx%d", rows, cols);
	tc_mat(&tc, U16, rows, cols, cols);
	tc_f32(&tc, rows, cols);
	tc_run(&tc, &cl_cast_bf16_f32, cuemu_cast_bf16_f32_cuda, NULL, 0, "cast bf16->f32 %dx%d", rows, cols);
}

static void case_encoder(int B, int T, int C, int V)
{
	int maxT = T + 3;
	tc_ids(&tc, B, T, V);
	tc_f32(&tc, V, C);
	tc_f32(&tc, maxT, C);
	tc_f32(&tc, B * T, C);
	tc_run(&tc, &cl_encoder_fwd, cuemu_encoder_forward_cuda, NULL, 1e-6, "encoder fwd B=%d T=%d C=%d V=%d", B,
	       T, C, V);
	tc_f32(&tc, B * T, C);
	tc_ids(&tc, B, T, V);
	tc_f32(&tc, V, C);
	tc_f32(&tc, maxT, C);
	tc_run(&tc, &cl_encoder_bwd, cuemu_encoder_backward_cuda, NULL, 1e-5, "encoder bwd B=%d T=%d C=%d V=%d", B,
	       T, C, V);
}

static void case_fill(int rows, int cols, int ld, float value)
{
	tc_mat(&tc, F32, rows, cols, ld);
	tc_run(&tc, &cl_fill, cuemu_fill_cuda, &value, 0, "fill %dx%d ld %d value %g", rows, cols, ld, value);
}

static void case_fill_bf16(int rows, int cols, int ld, float value)
{
	tc_mat(&tc, BF16, rows, cols, ld);
	tc_run(&tc, &cl_fill, cuemu_fill_cuda, &value, 0, "fill bf16 %dx%d ld %d value %g", rows, cols, ld, value);
}

static void case_gelu_residual(int N, int C)
{
	/* gelu(x) for x ~ -5 is 0.5 x (1 + tanh(..)), 1 + tanh cancelling to
	 * ~7e-4: errors are measured against values of order 1, as the inputs */
	float *x = tc_f32(&tc, N, C);
	scale(x, (size_t)N * C, 5.0f);
	tc_f32(&tc, N, C);
	tc.min_scale = 1.0;
	tc_run(&tc, &cl_gelu_fwd, cuemu_gelu_forward_cuda, NULL, 1e-5, "gelu fwd %dx%d", N, C);
	x = tc_f32(&tc, N, C);
	scale(x, (size_t)N * C, 5.0f);
	tc_f32(&tc, N, C);
	tc_f32(&tc, N, C);
	tc.min_scale = 1.0;
	tc_run(&tc, &cl_gelu_bwd, cuemu_gelu_backward_cuda, NULL, 1e-5, "gelu bwd %dx%d", N, C);
	tc_f32(&tc, N, C);
	tc_f32(&tc, N, C);
	tc_f32(&tc, N, C);
	tc_run(&tc, &cl_residual_fwd, cuemu_residual_forward_cuda, NULL, 0, "residual %dx%d", N, C);
	tc_f32(&tc, N, C);
	tc_f32(&tc, N, C);
	tc_run(&tc, &cl_accumulate, cuemu_accumulate_cuda, NULL, 0, "accumulate %dx%d", N, C);
}

static void case_sumsq(int rows, int cols, int ld)
{
	tc_mat(&tc, F32, rows, cols, ld);
	tc_mat(&tc, F64, 1, 1, 1);
	tc_scratch(&tc, F64, 1, 256, 1);
	tc_run(&tc, &cl_sumsq, cuemu_sumsq_cuda, NULL, 1e-12, "sumsq %dx%d ld %d", rows, cols, ld);
}

static void case_clip(int n, float max_norm_factor)
{
	struct lspo_clip_args a = { 0, n };
	double total = 0;
	for (int i = 0; i < n; i++) {
		double *p = tc_mat(&tc, F64, 1, 1, 1);
		*p = fabs(*p) * 10;
		total += *p;
	}
	tc_f32(&tc, 1, 2);
	a.max_norm = (float)(max_norm_factor * sqrt(total));
	tc_run(&tc, &cl_clip_scale, cuemu_clip_scale_cuda, &a, 1e-6, "clip_scale n=%d max_norm %g", n, a.max_norm);
}

/* A partial sum that is Inf or NaN: the norm stays non-finite, scale 0. */
static void case_clip_nonfinite(int n, double bad)
{
	struct lspo_clip_args a = { 1.0f, n };
	for (int i = 0; i < n; i++) {
		double *p = tc_mat(&tc, F64, 1, 1, 1);
		*p = i == n / 2 ? bad : fabs(*p);
	}
	tc_f32(&tc, 1, 2);
	tc_run(&tc, &cl_clip_scale, cuemu_clip_scale_cuda, &a, 0, "clip_scale n=%d with a %g partial", n, bad);
}

static void case_layernorm(int N, int C)
{
	float *x = tc_f32(&tc, N, C);
	scale(x, (size_t)N * C, 2.0f);
	tc_f32(&tc, 1, C);
	tc_f32(&tc, 1, C);
	tc_f32(&tc, N, C);
	tc_f32(&tc, 1, N);
	tc_f32(&tc, 1, N);
	tc_run(&tc, &cl_layernorm_fwd, cuemu_layernorm_forward_cuda, NULL, 1e-5, "layernorm fwd N=%d C=%d", N, C);

	tc_f32(&tc, N, C);                                  /* dout */
	float *inp = tc_f32(&tc, N, C), *w = tc_f32(&tc, 1, C);
	scale(inp, (size_t)N * C, 2.0f);
	float *mean = tc_f32(&tc, 1, N), *rstd = tc_f32(&tc, 1, N);
	float *out = xmalloc(sizeof(float) * N * C), *b = xmalloc(sizeof(float) * C);
	memset(b, 0, sizeof(float) * C);
	layernorm_forward_cpu(out, mean, rstd, inp, w, b, N, C);
	free(out);
	free(b);
	tc_f32(&tc, N, C);
	tc_f32(&tc, 1, C);
	tc_f32(&tc, 1, C);
	tc_run(&tc, &cl_layernorm_bwd, cuemu_layernorm_backward_cuda, NULL, 1e-4, "layernorm bwd N=%d C=%d", N, C);
}

static void case_matmul(void (*emu)(void *[], void *), int m, int n, int k, int ta, int tb, int pad, float alpha,
                        float beta)
{
	struct lspo_matmul_args a = { ta, tb, alpha, beta };
	int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
	tc_mat(&tc, F32, ar, ac, ac + pad);
	tc_mat(&tc, F32, br, bc, bc + 2 * pad);
	tc_mat(&tc, F32, m, n, n + pad);
	tc_run(&tc, &cl_matmul, emu, &a, 1e-5, "matmul m=%d n=%d k=%d ta=%d tb=%d pad=%d beta=%g", m, n, k, ta, tb,
	       pad, beta);
}

/* A bf16 matrix of bf16-rounded U(-1, 1) values, compared as values. */
static uint16_t *tc_bf16(struct tcase *c, int rows, int cols, int ld)
{
	return tc_mat(c, BF16, rows, cols, ld);
}

/* --dtype bf16 products: bf16 A and B through cublasGemmEx (C bf16 or
 * float32), and float32 A with bf16 B and C through the float32 copies of
 * lspo_bf16_cuda_call (cudaMallocAsync, widen and round kernels, strided). */
static void case_matmul_bf16(int m, int n, int k, int ta, int tb, int pad, float beta, int a_f32, int c_f32)
{
	struct lspo_matmul_args a = { ta, tb, 1.25f, beta };
	int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
	if (a_f32)
		tc_mat(&tc, F32, ar, ac, ac + pad);
	else
		tc_bf16(&tc, ar, ac, ac + pad);
	tc_bf16(&tc, br, bc, bc + 2 * pad);
	if (c_f32)
		tc_mat(&tc, F32, m, n, n + pad);
	else
		tc_bf16(&tc, m, n, n + pad);
	tc_run(&tc, &cl_matmul, cuemu_matmul_cuda, &a, 1e-5, "matmul bf16 m=%d n=%d k=%d ta=%d tb=%d pad=%d beta=%g "
	       "A %s C %s", m, n, k, ta, tb, pad, beta, a_f32 ? "f32" : "bf16", c_f32 ? "f32" : "bf16");
}

/* Ops on bf16 operands: layernorm, rmsnorm, residual, accumulate, gelu and
 * swiglu load and store bf16 in the kernel (a residual of mixed types
 * through the float32 copies).  The sums are exact in float32, so they agree
 * bit for bit; the float32 sums of the norms and the tanh and exp of gelu
 * and swiglu differ from the CPU's in the last bits, so a result may round
 * the other way: one bf16 spacing (2^-8 relative). */
static void case_ops_bf16(int N, int C)
{
	tc_bf16(&tc, N, C, C);
	tc_bf16(&tc, 1, C, C);
	tc_bf16(&tc, 1, C, C);
	tc_bf16(&tc, N, C, C);
	tc_f32(&tc, 1, N);
	tc_f32(&tc, 1, N);
	tc.min_scale = 1.0;
	tc_run(&tc, &cl_layernorm_fwd, cuemu_layernorm_forward_cuda, NULL, 1e-2, "layernorm bf16 N=%d C=%d", N, C);
	/* dout, inp, w (bf16), mean, rstd (float32, as the forward gives them), dinp (bf16), dw, db */
	tc_bf16(&tc, N, C, C);
	tc_bf16(&tc, N, C, C);
	tc_bf16(&tc, 1, C, C);
	float *mean = tc_f32(&tc, 1, N), *rstd = tc_f32(&tc, 1, N);
	for (int i = 0; i < N; i++)
		rstd[i] = 1.0f + 0.5f * (mean[i] + 1.0f);
	tc_bf16(&tc, N, C, C);
	tc_f32(&tc, 1, C);
	tc_f32(&tc, 1, C);
	tc.min_scale = 1.0;
	tc_run(&tc, &cl_layernorm_bwd, cuemu_layernorm_backward_cuda, NULL, 1e-2, "layernorm bwd bf16 N=%d C=%d", N,
	       C);
	struct lspo_rmsnorm_args ra = { 1e-5f };
	tc_bf16(&tc, N, C, C);
	tc_bf16(&tc, 1, C, C);
	tc_bf16(&tc, N, C, C);
	tc_f32(&tc, 1, N);
	tc.min_scale = 1.0;
	tc_run(&tc, &cl_rmsnorm_fwd, cuemu_rmsnorm_forward_cuda, &ra, 1e-2, "rmsnorm bf16 N=%d C=%d", N, C);
	/* dout, inp, w (bf16), rstd (float32), dinp (bf16), dw (float32) */
	tc_bf16(&tc, N, C, C);
	tc_bf16(&tc, N, C, C);
	tc_bf16(&tc, 1, C, C);
	float *rs = tc_f32(&tc, 1, N);
	for (int i = 0; i < N; i++)
		rs[i] = 1.0f + 0.5f * (rs[i] + 1.0f);
	tc_bf16(&tc, N, C, C);
	tc_f32(&tc, 1, C);
	tc.min_scale = 1.0;
	tc_run(&tc, &cl_rmsnorm_bwd, cuemu_rmsnorm_backward_cuda, &ra, 1e-2, "rmsnorm bwd bf16 N=%d C=%d", N, C);
	for (int mixed = 0; mixed < 2; mixed++) {
		if (mixed)
			tc_f32(&tc, N, C);
		else
			tc_bf16(&tc, N, C, C);
		tc_bf16(&tc, N, C, C);
		tc_bf16(&tc, N, C, C);
		tc_run(&tc, &cl_residual_fwd, cuemu_residual_forward_cuda, NULL, 0, "residual bf16%s N=%d C=%d",
		       mixed ? " (a float32)" : "", N, C);
	}
	tc_bf16(&tc, N, C, C);
	tc_bf16(&tc, N, C, C);
	tc_run(&tc, &cl_accumulate, cuemu_accumulate_cuda, NULL, 0, "accumulate bf16 N=%d C=%d", N, C);
	for (int b = 0; b < 2; b++) {   /* gelu fwd, bwd */
		uint16_t *x = tc_bf16(&tc, N, C, C);
		for (size_t i = 0; i < (size_t)N * C; i++)
			x[i] = lspo_bf16_from_f32(5.0f * lspo_bf16_to_f32(x[i]));
		tc_bf16(&tc, N, C, C);
		if (b)
			tc_bf16(&tc, N, C, C);
		tc.min_scale = 1.0;
		tc_run(&tc, b ? &cl_gelu_bwd : &cl_gelu_fwd, b ? cuemu_gelu_backward_cuda : cuemu_gelu_forward_cuda, NULL,
		       1e-2, "gelu %s bf16 N=%d C=%d", b ? "bwd" : "fwd", N, C);
	}
	for (int b = 0; b < 2; b++) {   /* swiglu fwd (gate, up, out), bwd (gate, up, dout, dgate, dup) */
		for (int k = 0; k < (b ? 5 : 3); k++)
			tc_bf16(&tc, N, C, C);
		tc.min_scale = 1.0;
		tc_run(&tc, b ? &cl_swiglu_bwd : &cl_swiglu_fwd, b ? cuemu_swiglu_backward_cuda : cuemu_swiglu_forward_cuda,
		       NULL, 1e-2, "swiglu %s bf16 N=%d C=%d", b ? "bwd" : "fwd", N, C);
	}
}

static void case_proj(int T, int m, int n, int d, int r)
{
	/* project_fwd: X (T, m), pidx/pval (m, r), A (d, T) */
	tc_f32(&tc, T, m);
	tc_ell(&tc, m, r, d);
	tc_f32(&tc, m, r);
	tc_f32(&tc, d, T);
	tc_run(&tc, &cl_project_fwd, cuemu_project_fwd_cuda, NULL, 1e-5, "project_fwd T=%d m=%d d=%d r=%d", T, m, d,
	       r);
	/* project_bwd: dY (T, n), qidx/qval (n, r), A (d, T), G (d, d), scratch (d, T) */
	for (int acc = 0; acc < 2; acc++) {
		struct lspo_project_bwd_args a = { acc ? 1.0f : 0.0f };
		tc_f32(&tc, T, n);
		tc_ell(&tc, n, r, d);
		tc_f32(&tc, n, r);
		tc_f32(&tc, d, T);
		tc_f32(&tc, d, d);
		tc_scratch(&tc, F32, d, T, 0);
		tc_run(&tc, &cl_project_bwd, cuemu_project_bwd_cuda, &a, 1e-5, "project_bwd T=%d n=%d d=%d r=%d beta=%d",
		       T, n, d, r, acc);
	}
	/* proj_apply: W (m, n), pidx/pval (m, r), qidx/qval (n, r), Delta (d, d), scratch (d, n) */
	for (int wd = 0; wd < 2; wd++) {
		struct lspo_proj_apply_args a = { wd ? -0.7f : 1.0f, wd ? 0.01f : 0.0f, 0 };
		tc_f32(&tc, m, n);
		tc_ell(&tc, m, r, d);
		tc_f32(&tc, m, r);
		tc_ell(&tc, n, r, d);
		tc_f32(&tc, n, r);
		tc_f32(&tc, d, d);
		tc_scratch(&tc, F32, d, n, 0);
		tc_run(&tc, &cl_proj_apply, cuemu_proj_apply_cuda, &a, 1e-5, "proj_apply m=%d n=%d d=%d r=%d wd=%d", m,
		       n, d, r, wd);
	}
}

/* Issue 12: a projector check's tasks (calib_add, proj_error, proj_learn). */
static void *tc_vec(struct tcase *c, int type, int len)
{
	void *p = tc_mat(c, type, 1, len, len);
	c->b[c->nb - 1].vector = 1;
	return p;
}

static void case_proj_check(int m, int n, int d, int r)
{
	/* calib_add: G (m, n) or (n, m) transposed, C (m, n) */
	for (int tr = 0; tr < 2; tr++)
		for (int first = 0; first < 2; first++) {
			struct lspo_calib_add_args a = { first, tr };
			tc_f32(&tc, tr ? n : m, tr ? m : n);
			tc_f32(&tc, m, n);
			tc_run(&tc, &cl_calib_add, cuemu_calib_add_cuda, &a, 0, "calib_add m=%d n=%d transpose=%d first=%d",
			       m, n, tr, first);
		}
	/* proj_error: pidx/pval (m, r), qidx/qval (n, r), G (m, n), out (doubles), scratch */
	for (int cap = 0; cap < 2; cap++) {
		struct lspo_proj_error_args a = { 1, cap, d };
		tc_ell(&tc, m, r, d);
		tc_f32(&tc, m, r);
		tc_ell(&tc, n, r, d);
		tc_f32(&tc, n, r);
		tc_f32(&tc, m, n);
		tc_vec(&tc, F64, 4);
		tc_scratch(&tc, F32, 1, (int)lspo_proj_error_work(m, n, d), 1);
		tc_run(&tc, &cl_proj_error, cuemu_proj_error_cuda, &a, 1e-5, "proj_error m=%d n=%d d=%d r=%d captured=%d",
		       m, n, d, r, cap);
	}
	/* proj_learn: as proj_error, mom (2 (m + n) r; second moments >= 0), step 3 */
	struct lspo_proj_learn_args a = { .d = d, .t = 3, .opts = lspo_proj_learn_opts_default() };
	tc_ell(&tc, m, r, d);
	tc_f32(&tc, m, r);
	tc_ell(&tc, n, r, d);
	tc_f32(&tc, n, r);
	tc_f32(&tc, m, n);
	size_t nm = (size_t)(m + n) * r;
	float *mom = tc_vec(&tc, F32, (int)(2 * nm));
	for (size_t i = nm; i < 2 * nm; i++)
		mom[i] = fabsf(mom[i]);
	tc_scratch(&tc, F32, 1, (int)lspo_proj_learn_work(m, n, d, r), 1);
	tc_run(&tc, &cl_proj_learn, cuemu_proj_learn_cuda, &a, 1e-5, "proj_learn m=%d n=%d d=%d r=%d", m, n, d, r);
}

static void case_xent(int B, int T, int V)
{
	int N = B * T;
	for (int grad = 0; grad < 2; grad++) {
		struct lspo_xent_args a = { 1.0f / (float)N };
		float *x = tc_f32(&tc, N, V);
		scale(x, (size_t)N * V, 4.0f);
		if (N > 1)
			x[V] = 70.0f;         /* needs the row max */
		int32_t *t = tc_ids(&tc, B, T, V);
		if (V > 2) {              /* a masked logit, not the target */
			x[1] = -INFINITY;
			t[0] = t[0] == 1 ? 2 : t[0];
		}
		tc_f32(&tc, 1, N);
		/* p - 1 and log-sum-exp minus the target's logit cancel when the
		 * target dominates: errors against the scale of dloss and of 1 */
		tc.min_scale = grad ? a.dloss : 1.0;
		tc_run(&tc, grad ? &cl_xent_fwdbwd : &cl_xent_fwd, grad ? cuemu_xent_backward_cuda : cuemu_xent_forward_cuda,
		       &a, 1e-4, "xent %s B=%d T=%d V=%d", grad ? "fwdbwd" : "fwd", B, T, V);
	}
}

/* bf16 logits: the kernel loads bf16 and rounds dlogits on store; the CPU
 * side computes on float32 copies.  Their float32 exps differ by an ulp, so
 * a dlogit may round the other way: one bf16 spacing (2^-8 relative). */
static void case_xent_bf16(int B, int T, int V)
{
	int N = B * T;
	for (int grad = 0; grad < 2; grad++) {
		struct lspo_xent_args a = { 1.0f / (float)N };
		uint16_t *x = tc_bf16(&tc, N, V, V);
		for (size_t i = 0; i < (size_t)N * V; i++)
			x[i] = lspo_bf16_from_f32(4.0f * lspo_bf16_to_f32(x[i]));
		int32_t *t = tc_ids(&tc, B, T, V);
		t[0] = -1;                /* an ignored target */
		tc_f32(&tc, 1, N);
		tc.min_scale = grad ? a.dloss : 1.0;
		tc_run(&tc, grad ? &cl_xent_fwdbwd : &cl_xent_fwd, grad ? cuemu_xent_backward_cuda : cuemu_xent_forward_cuda,
		       &a, 1e-2, "xent bf16 %s B=%d T=%d V=%d", grad ? "fwdbwd" : "fwd", B, T, V);
	}
}

static void case_rmsnorm(int N, int C)
{
	struct lspo_rmsnorm_args a = { 1e-5f };
	float *x = tc_f32(&tc, N, C);
	scale(x, (size_t)N * C, 2.0f);
	tc_f32(&tc, 1, C);
	tc_f32(&tc, N, C);
	tc_f32(&tc, 1, N);
	tc_run(&tc, &cl_rmsnorm_fwd, cuemu_rmsnorm_forward_cuda, &a, 1e-5, "rmsnorm fwd N=%d C=%d", N, C);
	tc_f32(&tc, N, C);
	float *inp = tc_f32(&tc, N, C), *w = tc_f32(&tc, 1, C), *rstd = tc_f32(&tc, 1, N);
	float *out = xmalloc(sizeof(float) * N * C);
	rmsnorm_forward_cpu(out, rstd, inp, w, N, C, 1e-5f);
	free(out);
	tc_f32(&tc, N, C);
	tc_f32(&tc, 1, C);
	tc_run(&tc, &cl_rmsnorm_bwd, cuemu_rmsnorm_backward_cuda, NULL, 1e-4, "rmsnorm bwd N=%d C=%d", N, C);
}

static void case_rope(int B, int T, int nh, int hd, int inv)
{
	struct lspo_rope_args a = { nh, hd, inv };
	tc_f32(&tc, B * T, nh * hd);
	tc_f32(&tc, T, hd);
	tc_run(&tc, &cl_rope, cuemu_rope_cuda, &a, 1e-6, "rope B=%d T=%d nh=%d hd=%d inv=%d", B, T, nh, hd, inv);
}

static void case_swiglu(int N, int I)
{
	float *g = tc_f32(&tc, N, I);
	scale(g, (size_t)N * I, 8.0f);
	tc_f32(&tc, N, I);
	tc_f32(&tc, N, I);
	tc_run(&tc, &cl_swiglu_fwd, cuemu_swiglu_forward_cuda, NULL, 1e-5, "swiglu fwd %dx%d", N, I);
	g = tc_f32(&tc, N, I);
	scale(g, (size_t)N * I, 8.0f);
	tc_f32(&tc, N, I);
	tc_f32(&tc, N, I);
	tc_f32(&tc, N, I);
	tc_f32(&tc, N, I);
	tc_run(&tc, &cl_swiglu_bwd, cuemu_swiglu_backward_cuda, NULL, 1e-5, "swiglu bwd %dx%d", N, I);
}

static void case_gqa(int B, int T, int nh, int nkv, int hd)
{
	struct lspo_gqa_attention_args a = { B, nh, nkv, hd };
	int N = B * T;
	float *q = tc_f32(&tc, N, nh * hd), *k = tc_f32(&tc, N, nkv * hd);
	scale(q, (size_t)N * nh * hd, 2.0f);
	scale(k, (size_t)N * nkv * hd, 2.0f);
	tc_f32(&tc, N, nkv * hd);
	tc_f32(&tc, N, nh * hd);
	tc_f32(&tc, 1, B * nh * T);
	tc_run(&tc, &cl_gqa_attention_fwd, cuemu_gqa_attention_forward_cuda, &a, 1e-5,
	       "gqa fwd B=%d T=%d nh=%d nkv=%d hd=%d", B, T, nh, nkv, hd);
	tc_f32(&tc, N, nh * hd);                            /* dout */
	q = tc_f32(&tc, N, nh * hd);
	k = tc_f32(&tc, N, nkv * hd);
	scale(q, (size_t)N * nh * hd, 2.0f);
	scale(k, (size_t)N * nkv * hd, 2.0f);
	float *v = tc_f32(&tc, N, nkv * hd);
	float *out = tc_f32(&tc, N, nh * hd), *lse = tc_f32(&tc, 1, B * nh * T);
	gqa_attention_forward_cpu(out, lse, q, k, v, B, T, nh, nkv, hd);
	tc_f32(&tc, N, nh * hd);
	tc_f32(&tc, N, nkv * hd);
	tc_f32(&tc, N, nkv * hd);
	tc_run(&tc, &cl_gqa_attention_bwd, cuemu_gqa_attention_backward_cuda, &a, 1e-5,
	       "gqa bwd B=%d T=%d nh=%d nkv=%d hd=%d", B, T, nh, nkv, hd);
}

static void case_proj_apply_t(int m, int n, int d, int r)
{
	for (int wd = 0; wd < 2; wd++) {
		struct lspo_proj_apply_args a = { wd ? -0.7f : 1.0f, wd ? 0.01f : 0.0f, 0 };
		tc_f32(&tc, m, n);
		tc_ell(&tc, m, r, d);
		tc_f32(&tc, m, r);
		tc_ell(&tc, n, r, d);
		tc_f32(&tc, n, r);
		tc_f32(&tc, d, d);
		tc_scratch(&tc, F32, d, n, 0);
		tc_run(&tc, &cl_proj_apply_t, cuemu_proj_apply_t_cuda, &a, 1e-5, "proj_apply_t m=%d n=%d d=%d r=%d wd=%d",
		       m, n, d, r, wd);
	}
}

static void llama_cases(void)
{
	static const int rms[][2] = { { 1, 1 }, { 3, 5 }, { 7, 17 }, { 5, 64 }, { 11, 129 }, { 2, 1000 } };
	for (int i = 0; i < 6; i++)
		case_rmsnorm(rms[i][0], rms[i][1]);
	static const int ropes[][4] = { { 1, 1, 1, 2 }, { 2, 7, 3, 8 }, { 3, 13, 2, 16 }, { 2, 5, 5, 10 },
	                                { 1, 19, 4, 64 } };
	for (int i = 0; i < 5; i++)
		for (int inv = 0; inv < 2; inv++)
			case_rope(ropes[i][0], ropes[i][1], ropes[i][2], ropes[i][3], inv);
	static const int sw[][2] = { { 1, 1 }, { 3, 7 }, { 5, 33 }, { 7, 129 } };
	for (int i = 0; i < 4; i++)
		case_swiglu(sw[i][0], sw[i][1]);
	/* T = 1 left out: there dq is 0 up to rounding (one key, P = 1), so the
	 * normwise comparison measures rounding against rounding */
	static const int Ts[] = { 2, 5, 19, 70 }, hds[] = { 8, 16 }, nkvs[] = { 4, 2, 1 };
	for (int it = 0; it < 4; it++)
		for (int ih = 0; ih < 2; ih++)
			for (int ik = 0; ik < 3; ik++)
				case_gqa(1 + (it + ik) % 2, Ts[it], 4, nkvs[ik], hds[ih]);
	case_gqa(2, 33, 8, 2, 8);
	case_gqa(1, 9, 6, 3, 16);
	case_gqa(1, 40, 4, 2, 64);
	case_gqa(1, 35, 2, 1, 128);   /* over 48 KiB of dynamic shared memory */
	static const int ap[][4] = { { 5, 7, 4, 2 }, { 33, 17, 8, 3 }, { 70, 40, 16, 4 }, { 9, 100, 12, 1 } };
	for (int i = 0; i < 4; i++)
		case_proj_apply_t(ap[i][0], ap[i][1], ap[i][2], ap[i][3]);
}
static void case_embedding(int B, int T, int C, int V)
{
	tc_ids(&tc, B, T, V);
	tc_f32(&tc, V, C);
	tc_f32(&tc, B * T, C);
	tc_run(&tc, &cl_embedding_fwd, cuemu_embedding_forward_cuda, NULL, 0, "embedding fwd B=%d T=%d C=%d V=%d", B,
	       T, C, V);
	tc_f32(&tc, B * T, C);
	tc_ids(&tc, B, T, V);
	tc_f32(&tc, V, C);
	tc_run(&tc, &cl_embedding_bwd, cuemu_embedding_backward_cuda, NULL, 1e-5, "embedding bwd B=%d T=%d C=%d V=%d",
	       B, T, C, V);
}

static void all_cases(void)
{
	/* test_ops_a_cuda's shapes */
	static const int Bs[] = { 1, 7, 3 }, Ts[] = { 1, 1, 11 }, Cs[] = { 1, 5, 48 }, Vs[] = { 3, 257 };
	for (int a = 0; a < 3; a++) {
		for (int c = 0; c < 3; c++) {
			for (int v = 0; v < 2; v++)
				case_encoder(Bs[a], Ts[a], Cs[c], Vs[v]);
			case_layernorm(Bs[a] * Ts[a], Cs[c]);
			case_gelu_residual(Bs[a] * Ts[a], Cs[c]);
		}
		for (int v = 0; v < 2; v++)
			case_xent(Bs[a], Ts[a], Vs[v]);
	}
	case_encoder(4, 64, 768, 1000);
	case_layernorm(33, 1600);
	case_layernorm(70, 768);
	case_gelu_residual(64, 3072);
	case_xent(1, 3, 50257);
	case_xent(2, 2, 5000);
	if (long_tests) {   /* GPT-2 sizes and grid-stride wrap-around */
		case_layernorm(256, 768);
		case_gelu_residual(256, 3072);
		case_xent(3, 11, 50257);
		case_encoder(700, 100, 5, 7);
		case_layernorm(70001, 5);
		case_gelu_residual(4099, 1031);
		case_xent(70001, 1, 3);
	}

	/* test_ops_b_cuda's shapes */
	static const int aB[] = { 1, 2 }, aT[] = { 1, 5, 17 }, aC[] = { 4, 12, 48 }, aNH[] = { 1, 2, 4 };
	for (int ib = 0; ib < 2; ib++)
		for (int it = 0; it < 3; it++)
			for (int ic = 0; ic < 3; ic++)
				for (int ih = 0; ih < 3; ih++)
					if (aC[ic] % aNH[ih] == 0)
						case_attention(aB[ib], aT[it], aC[ic], aNH[ih]);
	case_attention(2, 70, 128, 2);   /* hs = 64, several tiles of 32 */
	if (long_tests)
		case_attention(1, 256, 768, 12);
	static const int lens[] = { 1, 7, 8, 9, 1023 };
	for (int i = 0; i < 5; i++) {
		case_adamw(1, lens[i], lens[i], 1, 0.0f, 1.0f);
		case_adamw(1, lens[i], lens[i], 3, 0.1f, 0.37f);
	}
	case_adamw(5, 33, 40, 2, 0.1f, 0.5f);   /* strided rows */
	case_adamw_skip(3, 37, NAN);
	case_adamw_skip(1, 1023, INFINITY);
	case_adamw(3, 100, 100, 1, 0.0f, 1.0f);  /* contiguous rows: one long row */
	case_adamw_sr(1, 1023, 1023, 1, 0.0f, 1e-2f);
	case_adamw_sr(5, 33, 40, 3, 0.1f, 1e-3f);   /* strided rows */
	case_adamw_sr(3, 100, 100, 2, 0.0f, 1e-4f);  /* contiguous rows: one long row */
	static const int sra[][4] = { { 5, 7, 4, 2 }, { 33, 17, 8, 3 }, { 70, 40, 16, 4 } };
	for (int i = 0; i < 3; i++)
		for (int tr = 0; tr < 2; tr++)
			case_proj_apply_sr(sra[i][0], sra[i][1], sra[i][2], sra[i][3], tr);
	static const int shapes[][2] = { { 1, 1 }, { 3, 5 }, { 1, 1023 }, { 64, 65 }, { 7, 9 }, { 2, 1000 } };
	for (int i = 0; i < 6; i++)
		case_sumsq(shapes[i][0], shapes[i][1], shapes[i][1]);
	case_sumsq(9, 70, 77);
	case_sumsq(1000, 1000, 1000);   /* more elements than the grid: every block loops */
	for (int k = 0; k < 3; k++) {
		static const int ns[] = { 1, 6, 300 };
		case_clip(ns[k], 2.0f);
		case_clip(ns[k], 0.25f);
		case_clip(ns[k], 0.0f);
		case_clip_nonfinite(ns[k], INFINITY);
		case_clip_nonfinite(ns[k], NAN);
	}

	/* test_matmul_cuda's shapes, and strided matrices */
	static const int sizes[] = { 1, 7, 33, 127 };
	int nsizes = long_tests ? 4 : 3;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			for (int a = 0; a < nsizes; a++)
				for (int b = 0; b < nsizes; b++)
					for (int c = 0; c < nsizes; c++)
						case_matmul(cuemu_matmul_cuda, sizes[a], sizes[b], sizes[c], ta, tb, (a + c) % 2,
						            1.25f, (a + b + c) % 2 ? 0.5f : 0.0f);

	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			for (int v = 0; v < 3; v++) {   /* bf16 -> bf16, bf16 -> f32, f32 x bf16 -> bf16 */
				case_matmul_bf16(33, 7, 127, ta, tb, (ta + tb) % 2, (ta + v) % 2 ? 0.5f : 0.0f, v == 2,
				                 v == 1);
				case_matmul_bf16(1, 33, 7, ta, tb, 1, 0.0f, v == 2, v == 1);
			}
	case_ops_bf16(5, 96);
	case_ops_bf16(64, 33);
	case_fill_bf16(3, 5, 5, 0.0f);     /* cudaMemsetAsync of 2-byte elements */
	case_fill_bf16(3, 5, 8, 0.0f);
	case_fill_bf16(3, 5, 8, 1.3f);     /* rounded to bf16 */
	case_xent_bf16(2, 3, 50257);
	case_xent_bf16(4, 5, 77);

	/* test_proj_codelets_cuda's shapes: T, m, n, d, r */
	static const int proj[][5] = {
		{ 1, 1, 1, 1, 1 }, { 1, 5, 7, 4, 4 }, { 37, 29, 41, 13, 3 }, { 130, 100, 67, 50, 8 },
		{ 65, 33, 96, 17, 16 }, { 257, 120, 90, 64, 16 },
	};
	for (int i = 0; i < 6; i++)
		case_proj(proj[i][0], proj[i][1], proj[i][2], proj[i][3], proj[i][4]);
	/* a projector check's tasks (issue 12): m, n, d, r */
	static const int chk[][4] = { { 1, 1, 1, 1 }, { 5, 7, 4, 4 }, { 29, 41, 13, 3 }, { 64, 96, 24, 8 } };
	for (int i = 0; i < 4; i++)
		case_proj_check(chk[i][0], chk[i][1], chk[i][2], chk[i][3]);

	/* fill and cast */
	case_fill(1, 1, 1, 0.0f);
	case_fill(3, 5, 5, 0.0f);    /* cudaMemsetAsync */
	case_fill(3, 5, 8, 0.0f);    /* strided: the kernel */
	case_fill(30, 77, 77, 2.5f);
	case_fill(700, 2000, 2001, -1.0f);
	case_cast(1);
	case_cast(5);
	case_cast(7 * 300000);   /* more than 4096 blocks of 256: grid-stride */

	/* test_llama_ops_cuda's shapes (last: the earlier cases keep their inputs) */
	llama_cases();
	/* the token embedding of Llama-family models (after the rest: earlier cases keep their inputs) */
	case_embedding(1, 1, 1, 3);
	case_embedding(3, 11, 48, 257);
	case_embedding(4, 64, 768, 1000);
}

/* ---------------------------------------------------------------------------
 * The harness's self-test */

/* A mutant must differ from the CPU function, or be reported. */
static int caught(double err, double tol, const char *what, const char *why)
{
	if (!(err <= tol))
		printf("self-test [%s]: %s caught: %s\n", cuemu_schedule_name(), what, why);
	return !(err <= tol);
}

/* Under each of the schedules: a race shows under some orders only (the
 * missing barrier below is harmless when the threads run in reverse). */
static void self_test(const enum cuemu_mode *modes, const enum cuemu_order *orders, int nsched, uint64_t s)
{
	char why[1200];
	int race = 0, ld = 0;
	cuemu_set_quiet(1);
	for (int i = 0; i < nsched; i++) {
		cuemu_set_schedule(modes[i], orders[i], s + (uint64_t)i);

		/* gradnorm.cu without the barrier inside its tree reduction */
		tc_mat(&tc, F32, 64, 65, 65);
		tc_mat(&tc, F64, 1, 1, 1);
		tc_scratch(&tc, F64, 1, 256, 1);
		double e = tc_run_quiet(&tc, &cl_sumsq, cuemu_mut_barrier_sumsq_cuda, NULL, why, sizeof(why));
		race += caught(e, 1e-12, "a missing __syncthreads (gradnorm.cu)", why);

		/* matmul.cu with the leading dimensions of A and B swapped */
		struct lspo_matmul_args ma = { 0, 0, 1.0f, 0.0f };
		tc_f32(&tc, 5, 3);
		tc_f32(&tc, 3, 9);
		tc_f32(&tc, 5, 9);
		e = tc_run_quiet(&tc, &cl_matmul, cuemu_mut_ld_matmul_cuda, &ma, why, sizeof(why));
		ld += caught(e, 1e-5, "a wrong cuBLAS leading dimension (matmul.cu)", why);

		/* the rules: each kernel of selftest.cu must be reported as it says */
		int bad = cuemu_selftest_rules();
		CHECK(bad == 0, "self-test: %d rule(s) of the emulator not enforced [%s] (see above)", bad,
		      cuemu_schedule_name());
	}
	CHECK(race > 0, "self-test: a missing __syncthreads (gradnorm.cu) was caught under no schedule");
	CHECK(ld == nsched, "self-test: a wrong cuBLAS leading dimension (matmul.cu) was missed under %d schedule(s)",
	      nsched - ld);
	cuemu_set_quiet(0);
	cuemu_clear_reports();
}

/* attention.cu with one float less of dynamic shared memory: the kernel
 * faults at the guard page; in a child, whose report is read back. */
static void self_test_overrun(void)
{
	int fd[2];
	if (pipe(fd)) {
		perror("pipe");
		exit(TEST_ERROR);
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		struct lspo_attention_args a = { 1, 2 };
		tc_f32(&tc, 5, 3 * 16);
		tc_f32(&tc, 5, 16);
		tc_f32(&tc, 1, 2 * 5);
		char why[1200];
		double e = tc_run_quiet(&tc, &cl_attention_fwd, cuemu_mut_smem_attention_forward_cuda, &a, why,
		                        sizeof(why));
		fprintf(stderr, "the overrun did not fault (difference %.3g: %s)\n", e, why);
		_exit(0);
	}
	close(fd[1]);
	char out[8192];
	size_t len = 0;
	ssize_t r;
	while ((r = read(fd[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)r;
	out[len] = 0;
	close(fd[0]);
	int status;
	waitpid(pid, &status, 0);
	const char *msg = strstr(out, "dynamic shared memory overrun");
	CHECK(msg && !(WIFEXITED(status) && WEXITSTATUS(status) == 0),
	      "self-test: a dynamic shared memory overrun (attention.cu) was not reported; the child said:\n%s", out);
	if (msg) {
		const char *end = strchr(msg, '\n');
		printf("self-test: dynamic shared memory overrun caught: %.*s\n", (int)(end ? end - msg : 200), msg);
	}
}

int main(void)
{
	const char *lt = getenv("LSPO_TEST_LONG");
	long_tests = lt && lt[0] == '1';
	enum cuemu_mode modes[3] = { CUEMU_WARP, CUEMU_LOCKSTEP, CUEMU_WARP };
	enum cuemu_order orders[3] = { CUEMU_FORWARD, CUEMU_REVERSE, CUEMU_RANDOM };
	uint64_t s;
	int nsched = 3;
	if (cuemu_schedule_from_env(&modes[0], &orders[0], &s))
		nsched = 1;
	for (int i = 0; i < nsched; i++) {
		cuemu_set_schedule(modes[i], orders[i], s + (uint64_t)i);
		int before = ncases;
		size_t launches = cuemu_launch_count();
		all_cases();
		printf("%s: %d cases, %zu kernel launches\n", cuemu_schedule_name(), ncases - before,
		       cuemu_launch_count() - launches);
	}
	printf("%d cases: worst relative difference to the CPU functions %.2e (%s)\n", ncases, worst, worst_case);
	/* The self-test always tries the three schedules. */
	enum cuemu_mode all_modes[3] = { CUEMU_WARP, CUEMU_LOCKSTEP, CUEMU_WARP };
	enum cuemu_order all_orders[3] = { CUEMU_FORWARD, CUEMU_REVERSE, CUEMU_RANDOM };
	self_test(all_modes, all_orders, 3, s);
	self_test_overrun();
	return test_finish("test_cuemu");
}
