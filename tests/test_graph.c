/*
 * test_graph.c - a task graph with chains and a fan-in, ordered only by data
 * dependencies, gives the double-precision result under several policies.
 */
#include <string.h>

#include "common.h"

int main(void)
{
	static const char *const policies[] = { "lspo", "eager", "prio", "lws", "dmdas" };
	for (size_t p = 0; p < sizeof(policies) / sizeof(policies[0]); p++) {
		struct lspo_ctx *ctx = test_start(policies[p], -1, -1);
		CHECK(strcmp(lspo_ctx_sched(ctx), policies[p]) == 0, "policy %s reported as %s",
		      policies[p], lspo_ctx_sched(ctx));
		struct lspo_selftest_report r;
		int rc = lspo_selftest(ctx, 37, 5, 4, &r);
		CHECK(rc == LSPO_OK, "%s: selftest returned %s", policies[p], lspo_strerror(rc));
		CHECK(r.ntasks == 5 * 4 + 5, "%s: %d tasks", policies[p], r.ntasks);
		CHECK(r.tasks_on_cpu + r.tasks_on_cuda == r.ntasks, "%s: %d + %d tasks ran, %d submitted",
		      policies[p], r.tasks_on_cpu, r.tasks_on_cuda, r.ntasks);
		CHECK(r.max_rel_err < 1e-5, "%s: error %.3g", policies[p], r.max_rel_err);
		printf("%-6s %d tasks, error %.2e, %.3f s\n", policies[p], r.ntasks, r.max_rel_err, r.seconds);
		lspo_ctx_destroy(ctx);
	}
	/* Invalid sizes are refused. */
	struct lspo_ctx *ctx = test_start("lspo", -1, -1);
	struct lspo_selftest_report r;
	CHECK(lspo_selftest(ctx, 0, 1, 1, &r) == LSPO_EINVAL, "n = 0 accepted");
	lspo_ctx_destroy(ctx);
	return test_finish("test_graph");
}
