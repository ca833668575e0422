/* test_ctx.c - context life cycle, policy selection and status messages. */
#include <string.h>

#include "common.h"

int main(void)
{
	struct lspo_config cfg = lspo_config_default();
	CHECK(cfg.ncpus == -1 && cfg.ncuda == -1 && cfg.sched == NULL, "unexpected defaults");

	struct lspo_ctx *ctx = NULL;
	cfg.sched = "no-such-policy";
	CHECK(lspo_ctx_create(&cfg, &ctx) == LSPO_EINVAL && ctx == NULL, "unknown policy accepted");

	cfg = lspo_config_default();
	cfg.ncpus = 1;
	cfg.ncuda = 0;
	cfg.sched = "dmdas";
	int rc = lspo_ctx_create(&cfg, &ctx);
	CHECK(rc == LSPO_OK, "create: %s", lspo_strerror(rc));
	if (rc == LSPO_OK) {
		CHECK(lspo_ctx_ncpus(ctx) == 1 && lspo_ctx_ncuda(ctx) == 0, "%d CPU, %d CUDA workers",
		      lspo_ctx_ncpus(ctx), lspo_ctx_ncuda(ctx));
		CHECK(strcmp(lspo_ctx_sched(ctx), "dmdas") == 0, "policy %s", lspo_ctx_sched(ctx));
		struct lspo_ctx *second = NULL;
		CHECK(lspo_ctx_create(&cfg, &second) == LSPO_EBUSY && !second, "second context allowed");
		char buf[4096] = "";
		FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
		lspo_ctx_describe(ctx, f);
		fclose(f);
		CHECK(strstr(buf, "1 CPU worker") != NULL, "describe says: %s", buf);
		lspo_ctx_destroy(ctx);
	}
	/* After a clean shutdown a new context can start; a GPU memory cap
	 * reaches StarPU through STARPU_LIMIT_CUDA_MEM. */
	cfg.sched = NULL;
	cfg.cuda_mem_mib = 4096;
	rc = lspo_ctx_create(&cfg, &ctx);
	CHECK(rc == LSPO_OK, "restart: %s", lspo_strerror(rc));
	if (rc == LSPO_OK) {
		const char *env = getenv("STARPU_SCHED");
		CHECK(strcmp(lspo_ctx_sched(ctx), env && *env ? env : "lspo") == 0, "default policy %s",
		      lspo_ctx_sched(ctx));
		const char *cap = getenv("STARPU_LIMIT_CUDA_MEM");
		CHECK(cap && strcmp(cap, "4096") == 0, "STARPU_LIMIT_CUDA_MEM is %s", cap ? cap : "unset");
		lspo_ctx_destroy(ctx);
	}

	int found_lspo = 0, found_dmdas = 0;
	for (const char *const *n = lspo_sched_names(); *n; n++) {
		found_lspo |= !strcmp(*n, "lspo");
		found_dmdas |= !strcmp(*n, "dmdas");
	}
	CHECK(found_lspo && found_dmdas, "policy list incomplete");
	for (int s = 0; s < LSPO_NSTATUS; s++)
		CHECK(strcmp(lspo_strerror(s), "unknown status") != 0, "status %d has no message", s);
	CHECK(strcmp(lspo_strerror(-1), "unknown status") == 0, "negative status");
	return test_finish("test_ctx");
}
