/*
 * dp.c - data parallelism over MPI ranks with StarPU-MPI (issue 14).
 *
 * Every rank holds a replica of the model and draws its rows of the global
 * batch.  The loss is the mean over the global batch: each rank's loss
 * gradient is scaled by 1 / (targets of all ranks), so the sum of the ranks'
 * gradients is the gradient of the global batch, and the optimizer, the
 * norm and the clip then see the same gradients on every rank.
 *
 * The sum is a ring all-reduce, one per layer and per step, submitted into
 * the step's task graph right after the layer's backward (model.c calls
 * the reduce hook), so it overlaps the backward of the layers below.  Why a
 * ring: each rank sends 2 (N-1)/N of the payload whatever N (a tree sends
 * up to 2x the payload from inner nodes), only to its successor, and every
 * rank ends with the bits of the same sums (the all-gather copies them), so
 * the replicas stay bit-identical without a broadcast.  For a layer:
 *
 *   pack      the layer's gradients (native, zero: every dense gradient;
 *             lsp: G_hat of the compressed matrices and the dense gradients
 *             of the rest) -> N chunks of one flat host buffer;
 *   N-1 reduce-scatter exchanges: send chunk (r - s) to rank r + 1, receive
 *             chunk (r - s - 1) from rank r - 1 and add it (reduce_add);
 *             rank r then holds the full sum of chunk r + 1;
 *   N-1 all-gather exchanges: send chunk (r + 1 - s), receive chunk (r - s)
 *             in place;
 *   unpack    the chunks -> the gradients, which the norm and the
 *             optimizer read next.
 *
 * The sends and receives are detached StarPU-MPI requests on registered
 * chunk handles: StarPU orders them with the tasks by their data, the
 * requests carry the priority of the layer's reduction, and the tasks carry
 * the `reduce` stage, which the lspo policy serves right after the
 * backward (like the gradients' projections).  MPI tags are functions of
 * (round, layer, phase, exchange), so ranks never need to agree at run time.
 *
 * Small blocking exchanges (target counts, loss sums, checksums, flags)
 * are ring all-gathers of a few bytes per rank, summed in rank order so
 * every rank gets the same bits.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"
#include "bucket.h"
#include "residual.h"

#ifdef LSPO_HAVE_MPI
#include <starpu_mpi.h>
#endif

int lspo_dp_available(void)
{
#ifdef LSPO_HAVE_MPI
	return 1;
#else
	return 0;
#endif
}

int lspo_dp_launched(void)
{
	const char *force = getenv("LSPO_MPI");
	if (force && *force)
		return strcmp(force, "0") != 0;
	static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
	                                    "MPI_LOCALNRANKS", "SMPI_GLOBAL_SIZE" /* smpirun */ };
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (getenv(vars[i]))
			return 1;
	return 0;
}

struct lspo_dp {
	int rank, size;
	int started;
	uint64_t round;            /* reductions rounds (one per backward pass) */
	uint64_t ctl_round;        /* blocking exchanges */
	double bytes_reduce, bytes_control, payload;
};

int lspo_dp_rank(const struct lspo_dp *dp) { return dp ? dp->rank : 0; }
int lspo_dp_size(const struct lspo_dp *dp) { return dp ? dp->size : 1; }

void lspo_dp_bytes(const struct lspo_dp *dp, struct lspo_dp_bytes *out)
{
	memset(out, 0, sizeof(*out));
	if (!dp)
		return;
	out->reduce = dp->bytes_reduce;
	out->payload = dp->payload;
	out->reduce_analytic = dp->size > 1 ? 2.0 * (dp->size - 1) / dp->size * dp->payload : 0.0;
	out->control = dp->bytes_control;
}

#ifndef LSPO_HAVE_MPI

int lspo_dp_create(struct lspo_dp **out)
{
	*out = NULL;
	LSPO_FAIL(LSPO_ENOTSUP, "this lspo was built without StarPU-MPI (configure found no starpumpi "
	          "library, or was given --disable-mpi): build StarPU with MPI (scripts/build-starpu, with "
	          "libopenmpi-dev installed) and reconfigure");
}
int lspo_dp_start(struct lspo_dp *dp) { (void)dp; return LSPO_ENOTSUP; }
int lspo_model_set_dp(struct lspo_model *m, struct lspo_dp *dp) { (void)m; return dp ? LSPO_ENOTSUP : LSPO_OK; }
int lspo_dp_agree_max(struct lspo_dp *dp, long *value) { (void)dp; (void)value; return LSPO_OK; }
int lspo_dp_check_params(struct lspo_dp *dp, struct lspo_model *m, long step)
{
	(void)dp; (void)m; (void)step;
	return LSPO_OK;
}
void lspo_dp_stop(struct lspo_dp *dp) { (void)dp; }
void lspo_dp_free(struct lspo_dp *dp) { free(dp); }
void lspo_dp_abort(struct lspo_dp *dp, int code) { (void)dp; (void)code; }

#else

/* ------------------------------------------------------------------------ */
/* MPI and StarPU-MPI                                                       */

/* Under SimGrid's SMPI (StarPU built by scripts/build-starpu --simgrid-mpi),
 * each rank's MPI process is StarPU-MPI's progression actor: it initialises
 * and finalises MPI itself and runs the program's main in another simulated
 * actor, which may call StarPU-MPI but not MPI directly. */
#ifdef STARPU_SIMGRID
int lspo_dp_create(struct lspo_dp **out)
{
	*out = NULL;
	struct lspo_dp *dp = calloc(1, sizeof(*dp));
	if (!dp)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the data-parallel state");
	if (!getenv("SMPI_GLOBAL_SIZE")) {
		free(dp);
		LSPO_FAIL(LSPO_EINVAL, "this lspo is built for simulated clusters (SimGrid's SMPI): start it "
		          "with smpirun (bench/simulate-scaling)");
	}
	starpu_mpi_comm_rank(MPI_COMM_WORLD, &dp->rank);
	starpu_mpi_comm_size(MPI_COMM_WORLD, &dp->size);
	*out = dp;
	return LSPO_OK;
}
#else
int lspo_dp_create(struct lspo_dp **out)
{
	*out = NULL;
	struct lspo_dp *dp = calloc(1, sizeof(*dp));
	if (!dp)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the data-parallel state");
	int inited = 0, provided = 0;
	MPI_Initialized(&inited);
	if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
		free(dp);
		LSPO_FAIL(LSPO_EINVAL, "MPI_Init_thread failed: was this process started by mpirun or srun?");
	}
	if (!inited && provided < MPI_THREAD_SERIALIZED) {
		free(dp);
		LSPO_FAIL(LSPO_ENOTSUP, "the MPI library provides thread level %d, StarPU-MPI needs "
		          "MPI_THREAD_SERIALIZED (%d)", provided, MPI_THREAD_SERIALIZED);
	}
	MPI_Comm_rank(MPI_COMM_WORLD, &dp->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &dp->size);
	*out = dp;
	return LSPO_OK;
}
#endif

int lspo_dp_start(struct lspo_dp *dp)
{
	if (dp->started)
		return LSPO_OK;
	/* MPI is initialised already (lspo_dp_create): StarPU-MPI only starts
	 * its progression thread. */
	LSPO_STARPU(starpu_mpi_init(NULL, NULL, 0));
	dp->started = 1;
	return LSPO_OK;
}

void lspo_dp_stop(struct lspo_dp *dp)
{
	if (!dp || !dp->started)
		return;
	starpu_task_wait_for_all();
	starpu_mpi_wait_for_all(MPI_COMM_WORLD);
	starpu_mpi_shutdown();
	dp->started = 0;
}

void lspo_dp_free(struct lspo_dp *dp)
{
	if (!dp)
		return;
#ifndef STARPU_SIMGRID   /* SMPI: StarPU-MPI's progression actor finalises */
	int finalized = 0;
	MPI_Finalized(&finalized);
	if (!finalized)
		MPI_Finalize();
#endif
	free(dp);
}

void lspo_dp_abort(struct lspo_dp *dp, int code)
{
	if (dp && dp->size > 1) {
		fflush(stdout);
		fflush(stderr);
#ifdef STARPU_SIMGRID
		_Exit(code);   /* SMPI: every rank lives in this one process */
#else
		MPI_Abort(MPI_COMM_WORLD, code);
#endif
	}
}

static int mod(int a, int n) { return ((a % n) + n) % n; }

/* Tags: bit 61 marks blocking exchanges; a reduction's tag packs the round
 * (20 bits), the bucket (28 bits), the phase (1 bit) and the exchange (11 bits). */
#define DP_MAX_RANKS 2048
static starpu_mpi_tag_t reduce_tag(uint64_t round, int bucket, int phase, int s)
{
	return (starpu_mpi_tag_t)(((round & 0xfffffu) << 40) | ((uint64_t)bucket << 12) | ((uint64_t)phase << 11)
	                          | (uint64_t)s);
}
static starpu_mpi_tag_t control_tag(uint64_t round, int s)
{
	return (starpu_mpi_tag_t)((1ull << 61) | ((round & 0xffffffffffull) << 12) | (uint64_t)s);
}

/* Collective, blocking: all (size x bytes) = every rank's `mine`, in rank order. */
static int allgather(struct lspo_dp *dp, const void *mine, size_t bytes, void *all)
{
	int n = dp->size, r = dp->rank;
	memcpy((char *)all + (size_t)r * bytes, mine, bytes);
	if (n == 1)
		return LSPO_OK;
	starpu_data_handle_t *h = calloc((size_t)n, sizeof(*h));
	if (!h)
		LSPO_FAIL(LSPO_ENOMEM, "data parallel: out of memory");
	for (int i = 0; i < n; i++)
		starpu_vector_data_register(&h[i], STARPU_MAIN_RAM, (uintptr_t)((char *)all + (size_t)i * bytes), 1,
		                            bytes);
	uint64_t round = dp->ctl_round++;
	int rc = LSPO_OK;
	for (int s = 0; s < n - 1 && !rc; s++) {
		starpu_mpi_req sreq, rreq;
		MPI_Status st;
		int cs = mod(r - s, n), cr = mod(r - s - 1, n);
		if (starpu_mpi_irecv(h[cr], &rreq, mod(r - 1, n), control_tag(round, s), MPI_COMM_WORLD)
		    || starpu_mpi_isend(h[cs], &sreq, mod(r + 1, n), control_tag(round, s), MPI_COMM_WORLD)
		    || starpu_mpi_wait(&sreq, &st) || starpu_mpi_wait(&rreq, &st)) {
			lspo_error("data parallel: an exchange with the ranks next to rank %d failed", r);
			rc = LSPO_ESTARPU;
		}
		dp->bytes_control += (double)bytes;
	}
	for (int i = 0; i < n; i++)
		starpu_data_unregister(h[i]);
	free(h);
	return rc;
}

/* Collective: out[k] = sum over ranks of v[k], in rank order (the same bits everywhere). */
static int allsum(struct lspo_dp *dp, const double *v, int k, double *out)
{
	double *all = malloc(sizeof(double) * (size_t)k * (size_t)dp->size);
	if (!all)
		LSPO_FAIL(LSPO_ENOMEM, "data parallel: out of memory");
	int rc = allgather(dp, v, sizeof(double) * (size_t)k, all);
	for (int j = 0; j < k; j++) {
		out[j] = 0;
		for (int i = 0; !rc && i < dp->size; i++)
			out[j] += all[(size_t)i * k + j];
	}
	free(all);
	return rc;
}

int lspo_dp_agree_max(struct lspo_dp *dp, long *value)
{
	if (!dp || dp->size == 1)
		return LSPO_OK;
	long *all = malloc(sizeof(long) * (size_t)dp->size);
	if (!all)
		LSPO_FAIL(LSPO_ENOMEM, "data parallel: out of memory");
	int rc = allgather(dp, value, sizeof(long), all);
	for (int i = 0; !rc && i < dp->size; i++)
		if (all[i] > *value)
			*value = all[i];
	free(all);
	return rc;
}

/* 64-bit FNV-1a over 32-bit words. */
static uint64_t checksum(const float *x, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		uint32_t w;
		memcpy(&w, &x[i], sizeof(w));
		h = (h ^ w) * 0x100000001b3ull;
	}
	return h;
}

int lspo_dp_check_params(struct lspo_dp *dp, struct lspo_model *m, long step)
{
	if (!dp || dp->size == 1)
		return LSPO_OK;
	size_t n = lspo_model_num_floats(m);
	float *p = malloc((n ? n : 1) * sizeof(float));
	uint64_t *all = malloc(sizeof(uint64_t) * (size_t)dp->size);
	if (!p || !all) {
		free(p);
		free(all);
		LSPO_FAIL(LSPO_ENOMEM, "data parallel: cannot allocate %zu MiB for the parameter checksum",
		          n * sizeof(float) >> 20);
	}
	lspo_model_get_params(m, p);
	/* Test hooks (tests/test_mpi.sh): LSPO_DP_FAULT=diverge:K makes rank K
	 * see its first parameter one ulp higher, as a replica that diverged;
	 * LSPO_DP_DUMP=PREFIX writes each rank's parameters to PREFIX.rankK. */
	const char *fault = getenv("LSPO_DP_FAULT"), *dump = getenv("LSPO_DP_DUMP");
	if (fault && !strncmp(fault, "diverge:", 8) && atoi(fault + 8) == dp->rank && n)
		p[0] = nextafterf(p[0], INFINITY);
	if (dump && *dump) {
		char path[4096];
		snprintf(path, sizeof(path), "%s.rank%d", dump, dp->rank);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(p, sizeof(float), n, f) != n)
			lspo_warn("LSPO_DP_DUMP: cannot write %s", path);
		if (f)
			fclose(f);
	}
	uint64_t mine = checksum(p, n);
	free(p);
	int rc = allgather(dp, &mine, sizeof(mine), all);
	for (int i = 1; !rc && i < dp->size; i++)
		if (all[i] != all[0]) {
			lspo_error("data parallel: after step %ld the parameters differ across ranks: checksum "
			           "%016llx on rank 0, %016llx on rank %d (the replicas diverged)", step,
			           (unsigned long long)all[0], (unsigned long long)all[i], i);
			rc = LSPO_EINVAL;
		}
	free(all);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The model's reduction                                                    */

/* One layer's gradients as one flat buffer in N chunks. */
struct bucket {
	int id;                            /* tag field: variant * (n_layer + 2) + layer + 1 */
	int ntensors;
	starpu_data_handle_t *tensors;     /* the gradients (not owned) */
	size_t total;                      /* floats */
	float *buf, *rbuf;                 /* the chunks, the received chunks */
	starpu_data_handle_t *part, *recv; /* (1, len[c]) matrices; NULL where len[c] = 0 */
	size_t *len;
	starpu_data_handle_t *live;        /* the non-empty parts, in order (pack, unpack) */
	int nlive;
};

struct dp_model {
	struct lspo_dp *dp;
	struct bucket *buckets;
	int nbuckets, cap;
	starpu_data_handle_t *scratch;     /* the handle list being assembled */
	int nscratch, cap_scratch;
};

static void bucket_free(struct bucket *b, int n)
{
	for (int c = 0; c < n; c++) {
		if (b->part && b->part[c])
			starpu_data_unregister(b->part[c]);
		if (b->recv && b->recv[c])
			starpu_data_unregister(b->recv[c]);
	}
	starpu_free(b->buf);
	starpu_free(b->rbuf);
	free(b->tensors);
	free(b->part);
	free(b->recv);
	free(b->len);
	free(b->live);
	memset(b, 0, sizeof(*b));
}

static size_t handle_floats(starpu_data_handle_t h)
{
	return (size_t)starpu_matrix_get_nx(h) * starpu_matrix_get_ny(h);
}

static int bucket_build(struct bucket *b, int id, const starpu_data_handle_t *t, int nt, int n)
{
	memset(b, 0, sizeof(*b));
	b->id = id;
	b->ntensors = nt;
	for (int i = 0; i < nt; i++)
		b->total += handle_floats(t[i]);
	b->tensors = malloc(sizeof(*t) * (size_t)nt);
	b->part = calloc((size_t)n, sizeof(*b->part));
	b->recv = calloc((size_t)n, sizeof(*b->recv));
	b->len = calloc((size_t)n, sizeof(*b->len));
	b->live = calloc((size_t)n, sizeof(*b->live));
	size_t bytes = (b->total ? b->total : 1) * sizeof(float);
	if (!b->tensors || !b->part || !b->recv || !b->len || !b->live || starpu_malloc((void **)&b->buf, bytes)
	    || starpu_malloc((void **)&b->rbuf, bytes)) {
		bucket_free(b, 0);
		LSPO_FAIL(LSPO_ENOMEM, "data parallel: cannot allocate a gradient bucket of %zu KiB", 2 * bytes >> 10);
	}
	memcpy(b->tensors, t, sizeof(*t) * (size_t)nt);
	for (int c = 0; c < n; c++) {
		size_t lo = b->total * (size_t)c / (size_t)n, hi = b->total * (size_t)(c + 1) / (size_t)n;
		b->len[c] = hi - lo;
		if (!b->len[c])
			continue;
		lspo_matrix_register(&b->part[c], b->buf + lo, 1, (int)b->len[c]);
		lspo_matrix_register(&b->recv[c], b->rbuf + lo, 1, (int)b->len[c]);
		b->live[b->nlive++] = b->part[c];
	}
	return LSPO_OK;
}

static int scratch_push(struct dp_model *d, starpu_data_handle_t h)
{
	if (d->nscratch == d->cap_scratch) {
		int cap = d->cap_scratch ? 2 * d->cap_scratch : 32;
		starpu_data_handle_t *p = realloc(d->scratch, sizeof(*p) * (size_t)cap);
		if (!p)
			LSPO_FAIL(LSPO_ENOMEM, "data parallel: out of memory");
		d->scratch = p;
		d->cap_scratch = cap;
	}
	d->scratch[d->nscratch++] = h;
	return LSPO_OK;
}

/* The bucket of this layer's gradients as the current hooks form them. */
static int find_bucket(struct lspo_model *m, struct dp_model *d, int layer, struct bucket **out)
{
	*out = NULL;
	int lsp = lsp_hooks_active(m);
	d->nscratch = 0;
	for (int i = 0; i < m->layout.ntensors; i++)
		if (m->layout.tensors[i].layer == layer && m->grad_in_norm(m, i))
			TRY(scratch_push(d, m->hg[i]));
	for (int k = 0; lsp && k < lsp_state_nmats(m); k++) {
		struct lsp_state s = lsp_state_matrix(m, k);
		if (s.layer == layer)
			TRY(scratch_push(d, s.ghat));
	}
	if (!d->nscratch)
		return LSPO_OK;
	int id = lsp * (m->cfg.n_layer + 2) + layer + 1;
	for (int i = 0; i < d->nbuckets; i++) {
		struct bucket *b = &d->buckets[i];
		if (b->id != id)
			continue;
		if (b->ntensors == d->nscratch && !memcmp(b->tensors, d->scratch, sizeof(*d->scratch) * (size_t)d->nscratch)) {
			*out = b;
			return LSPO_OK;
		}
		/* the mode changed its handles (lspo_model_set_mode waits for all tasks) */
		bucket_free(b, d->dp->size);
		TRY(bucket_build(b, id, d->scratch, d->nscratch, d->dp->size));
		*out = b;
		return LSPO_OK;
	}
	if (d->nbuckets == d->cap) {
		int cap = d->cap ? 2 * d->cap : 16;
		struct bucket *p = realloc(d->buckets, sizeof(*p) * (size_t)cap);
		if (!p)
			LSPO_FAIL(LSPO_ENOMEM, "data parallel: out of memory");
		d->buckets = p;
		d->cap = cap;
	}
	TRY(bucket_build(&d->buckets[d->nbuckets], id, d->scratch, d->nscratch, d->dp->size));
	*out = &d->buckets[d->nbuckets++];
	return LSPO_OK;
}

static int dp_reduce(struct lspo_model *m, int layer)
{
	struct dp_model *d = m->dp;
	struct lspo_dp *dp = d->dp;
	struct bucket *b;
	if (m->dp_defer)   /* gradient accumulation: the last micro-batch reduces the sums */
		return LSPO_OK;
	TRY(find_bucket(m, d, layer, &b));
	if (!b)
		return LSPO_OK;
	int n = dp->size, r = dp->rank, next = mod(r + 1, n), prev = mod(r - 1, n);
	int name_layer = layer < 0 ? 0 : layer;
	/* after the backward of its layer, before everything else of the pipeline */
	int prio = 2 * m->cfg.n_layer + 2 + name_layer;
	TRY(lspo_bucket_pack_submit(b->tensors, b->ntensors, b->live, b->nlive, prio,
	                            model_name(m, "bucket_pack", name_layer, "reduce")));
	const char *add = model_name(m, "reduce_add", name_layer, "reduce");
	for (int s = 0; s < n - 1; s++) {   /* reduce-scatter */
		int cs = mod(r - s, n), cr = mod(r - s - 1, n);
		starpu_mpi_tag_t tag = reduce_tag(dp->round, b->id, 0, s);
		if (b->len[cs]) {
			LSPO_STARPU(starpu_mpi_isend_detached_prio(b->part[cs], next, tag, prio, MPI_COMM_WORLD, NULL, NULL));
			dp->bytes_reduce += (double)b->len[cs] * sizeof(float);
		}
		if (b->len[cr]) {
			LSPO_STARPU(starpu_mpi_irecv_detached(b->recv[cr], prev, tag, MPI_COMM_WORLD, NULL, NULL));
			TRY(lspo_accumulate_submit(b->recv[cr], b->part[cr], prio, add));
		}
	}
	for (int s = 0; s < n - 1; s++) {   /* all-gather */
		int cs = mod(r + 1 - s, n), cr = mod(r - s, n);
		starpu_mpi_tag_t tag = reduce_tag(dp->round, b->id, 1, s);
		if (b->len[cs]) {
			LSPO_STARPU(starpu_mpi_isend_detached_prio(b->part[cs], next, tag, prio, MPI_COMM_WORLD, NULL, NULL));
			dp->bytes_reduce += (double)b->len[cs] * sizeof(float);
		}
		if (b->len[cr])
			LSPO_STARPU(starpu_mpi_irecv_detached(b->part[cr], prev, tag, MPI_COMM_WORLD, NULL, NULL));
	}
	dp->payload += (double)b->total * sizeof(float);
	return lspo_bucket_unpack_submit(b->live, b->nlive, b->tensors, b->ntensors, prio,
	                                 model_name(m, "bucket_unpack", name_layer, "reduce"));
}

/* A new batch: a new round of tags, and the global number of targets. */
static int dp_batch(struct lspo_model *m)
{
	struct dp_model *d = m->dp;
	d->dp->round++;
	double local = m->ntargets, all;
	TRY(allsum(d->dp, &local, 1, &all));
	m->ntargets_all = (int)all;
	return LSPO_OK;
}

static double dp_loss(struct lspo_model *m, double sum)
{
	struct dp_model *d = m->dp;
	double all;
	if (allsum(d->dp, &sum, 1, &all))
		return NAN;   /* logged; a NaN loss stops the run */
	return m->ntargets_all ? all / m->ntargets_all : 0.0;
}

static void dp_free(struct lspo_model *m)
{
	struct dp_model *d = m->dp;
	if (!d)
		return;
	for (int i = 0; i < d->nbuckets; i++)
		bucket_free(&d->buckets[i], d->dp->size);
	free(d->buckets);
	free(d->scratch);
	free(d);
	m->dp = NULL;
	m->dp_hooks = NULL;
}

static const struct model_dp_hooks dp_hooks = {
	.batch = dp_batch, .reduce = dp_reduce, .loss = dp_loss, .free = dp_free,
};

int lspo_model_set_dp(struct lspo_model *m, struct lspo_dp *dp)
{
	starpu_task_wait_for_all();
	dp_free(m);
	if (!dp || dp->size == 1)
		return LSPO_OK;
	if (!dp->started)
		LSPO_FAIL(LSPO_EINVAL, "lspo_model_set_dp: StarPU-MPI is not started (lspo_dp_start)");
	if (dp->size > DP_MAX_RANKS)
		LSPO_FAIL(LSPO_ENOTSUP, "data parallel: %d ranks, at most %d", dp->size, DP_MAX_RANKS);
	if (m->cfg.n_layer + 2 > (1 << 13))
		LSPO_FAIL(LSPO_ENOTSUP, "data parallel: %d layers, at most %d", m->cfg.n_layer, (1 << 13) - 2);
	struct dp_model *d = calloc(1, sizeof(*d));
	if (!d)
		LSPO_FAIL(LSPO_ENOMEM, "data parallel: out of memory");
	d->dp = dp;
	m->dp = d;
	m->dp_hooks = &dp_hooks;
	return LSPO_OK;
}

#endif
