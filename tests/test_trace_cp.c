/*
 * test_trace_cp.c - the trace's critical path follows StarPU's real data
 * dependencies: read-after-write (step 1), write-after-read (step 2) and
 * partitioned data, a task on the parent after tasks on its children
 * (step 3).  Tasks sleep for fixed times on 2 CPU workers, so each step's
 * longest chain is known; tasks.csv has one row per task with its step.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <starpu.h>

#include "common.h"
#include "codelet_util.h"

static void sleep_cpu(void *buffers[], void *arg)
{
	(void)buffers;
	int ms;
	starpu_codelet_unpack_args(arg, &ms);
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

static struct starpu_codelet cl_sleep = {
	.cpu_funcs = { sleep_cpu },
	.nbuffers = STARPU_VARIABLE_NBUFFERS,
	.name = "trace_sleep",
};

/* A task named `name` sleeping ms milliseconds on the data given as
 * (mode, handle) pairs, n of them. */
static void sleep_task(const char *name, int ms, int n, ...)
{
	struct starpu_data_descr descr[4];
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		descr[i].mode = (enum starpu_data_access_mode)va_arg(ap, int);
		descr[i].handle = va_arg(ap, starpu_data_handle_t);
	}
	va_end(ap);
	int rc = starpu_task_insert(&cl_sleep, STARPU_DATA_MODE_ARRAY, descr, n, STARPU_VALUE, &ms,
	                            sizeof(ms), STARPU_NAME, name, 0);
	CHECK(rc == 0, "task %s not submitted (%d)", name, rc);
}

/* The chain of the critical path printed for `step` in summary.txt. */
static int chain_of(const char *summary, int step, char *chain, size_t len)
{
	char head[32];
	snprintf(head, sizeof(head), "\nstep %d:", step);
	const char *s = strstr(summary, head);
	if (!s)
		return -1;
	const char *cp = strstr(s, "critical path:");
	const char *colon = cp ? strstr(cp, "tasks: ") : NULL;
	if (!colon)
		return -1;
	colon += strlen("tasks: ");
	size_t n = strcspn(colon, "\n");
	if (n >= len)
		n = len - 1;
	memcpy(chain, colon, n);
	chain[n] = 0;
	return 0;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

int main(void)
{
	const char *builddir = getenv("LSPO_BUILDDIR");
	char dir[4096], path[4200];
	snprintf(dir, sizeof(dir), "%s/tests/out/trace_cp", builddir ? builddir : ".");
	struct lspo_config cfg = lspo_config_default();
	cfg.sched = "eager";
	cfg.ncpus = 2;
	cfg.ncuda = 0;
	cfg.trace_dir = dir;
	struct lspo_ctx *ctx;
	int rc = lspo_ctx_create(&cfg, &ctx);
	if (rc == LSPO_ENODEV) {
		fprintf(stderr, "skip: fewer than 2 CPU workers\n");
		return TEST_SKIP;
	}
	if (rc)
		return TEST_ERROR;

	float x = 0, y = 0, z = 0, w = 0, v = 0, m[8 * 4] = { 0 };
	starpu_data_handle_t hx, hy, hz, hw, hv, hm, part[2];
	starpu_variable_data_register(&hx, STARPU_MAIN_RAM, (uintptr_t)&x, sizeof(x));
	starpu_variable_data_register(&hy, STARPU_MAIN_RAM, (uintptr_t)&y, sizeof(y));
	starpu_variable_data_register(&hz, STARPU_MAIN_RAM, (uintptr_t)&z, sizeof(z));
	starpu_variable_data_register(&hw, STARPU_MAIN_RAM, (uintptr_t)&w, sizeof(w));
	starpu_variable_data_register(&hv, STARPU_MAIN_RAM, (uintptr_t)&v, sizeof(v));
	lspo_matrix_register(&hm, m, 8, 4);
	struct starpu_data_filter rows = { .filter_func = starpu_matrix_filter_vertical_block,
	                                   .nchildren = 2 };
	starpu_data_partition_plan(hm, &rows, part);

	/* Step 1, read-after-write: a -> b -> d (20 + 10 + 5 ms) vs c -> d (100 + 5). */
	lspo_trace_mark_step(1);
	sleep_task("a", 20, 1, STARPU_W, hx);
	sleep_task("b", 10, 2, STARPU_R, hx, STARPU_W, hy);
	sleep_task("c", 100, 1, STARPU_W, hz);
	sleep_task("d", 5, 3, STARPU_R, hy, STARPU_R, hz, STARPU_W, hw);
	starpu_task_wait_for_all();

	/* Step 2, write-after-read: g -> h (60 + 5 ms) vs i (20). */
	lspo_trace_mark_step(2);
	sleep_task("g", 60, 1, STARPU_R, hx);
	sleep_task("h", 5, 1, STARPU_W, hx);
	sleep_task("i", 20, 1, STARPU_W, hv);
	starpu_task_wait_for_all();

	/* Step 3, partitioned data: p0 (child 0, 60 ms) -> q (parent, 5 ms). */
	lspo_trace_mark_step(3);
	starpu_data_partition_submit(hm, 2, part);
	sleep_task("p0", 60, 1, STARPU_W, part[0]);
	sleep_task("p1", 5, 1, STARPU_W, part[1]);
	starpu_data_unpartition_submit(hm, 2, part, STARPU_MAIN_RAM);
	sleep_task("q", 5, 1, STARPU_R, hm);
	starpu_task_wait_for_all();
	lspo_trace_mark_step(0);

	CHECK(lspo_trace_flush() == LSPO_OK, "flush failed");
	snprintf(path, sizeof(path), "%s/summary.txt", dir);
	const char *summary = slurp(path);
	CHECK(summary != NULL, "no %s", path);
	if (summary) {
		static const char *const want[3] = { "c -> d", "g -> h", "p0 -> q" };
		for (int s = 1; s <= 3; s++) {
			char chain[256] = "";
			CHECK(chain_of(summary, s, chain, sizeof(chain)) == 0, "step %d: no critical path", s);
			CHECK(strcmp(chain, want[s - 1]) == 0, "step %d: critical path '%s', expected '%s'", s,
			      chain, want[s - 1]);
		}
	}
	snprintf(path, sizeof(path), "%s/tasks.csv", dir);
	FILE *f = fopen(path, "r");
	CHECK(f != NULL, "no %s", path);
	if (f) {
		char line[512];
		int per_step[4] = { 0 }, rows_seen = 0;
		while (fgets(line, sizeof(line), f)) {
			int step;
			char name[64];
			if (line[0] == '#' || sscanf(line, "%d,%63[^,],", &step, name) != 2)
				continue;
			rows_seen++;
			if (step >= 0 && step <= 3)
				per_step[step]++;
		}
		fclose(f);
		CHECK(rows_seen == 10, "%d task rows, expected 10", rows_seen);
		CHECK(per_step[1] == 4 && per_step[2] == 3 && per_step[3] == 3,
		      "rows per step %d %d %d, expected 4 3 3", per_step[1], per_step[2], per_step[3]);
	}

	starpu_data_partition_clean(hm, 2, part);
	starpu_data_unregister(hm);
	starpu_data_unregister(hx);
	starpu_data_unregister(hy);
	starpu_data_unregister(hz);
	starpu_data_unregister(hw);
	starpu_data_unregister(hv);
	lspo_ctx_destroy(ctx);
	return test_finish("test_trace_cp");
}
