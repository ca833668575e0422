/*
 * dp_watch.c - data parallel runs: a rank that makes no progress for
 * --rank-timeout seconds stops every rank.  A rank that dies is noticed by
 * the launcher (mpirun, srun --kill-on-bad-exit), which ends the others; a
 * rank that hangs (stopped, a peer's network gone) is not, and its peers
 * would wait for its messages forever.  The training loop beats after each
 * step, check and save; a thread looks once a second.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"

struct dp_watch {
	struct lspo_dp *dp;
	double limit;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	double last;
	int stop;
};

static double mono_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *watch(void *arg)
{
	struct dp_watch *w = arg;
	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&w->cond, &w->lock, &until);
		if (!w->stop && mono_now() - w->last > w->limit) {
			fprintf(stderr, "lspo train: rank %d made no progress for %.0f s (--rank-timeout): another rank "
			        "is gone or hung; stopping every rank\n", lspo_dp_rank(w->dp), w->limit);
			lspo_dp_abort(w->dp, CLI_FAIL);
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int dp_watch_start(struct lspo_dp *dp, double seconds, struct dp_watch **out)
{
	*out = NULL;
	if (!dp || lspo_dp_size(dp) < 2 || seconds <= 0)
		return CLI_OK;
	struct dp_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return CLI_FAIL;
	w->dp = dp;
	w->limit = seconds;
	w->last = mono_now();
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	job_signals_block(1);   /* signals stay with the main thread */
	int rc = pthread_create(&w->thread, NULL, watch, w);
	job_signals_block(0);
	if (rc) {
		free(w);
		fprintf(stderr, "lspo train: cannot start the rank watchdog\n");
		return CLI_FAIL;
	}
	*out = w;
	return CLI_OK;
}

void dp_watch_beat(struct dp_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->last = mono_now();
	pthread_mutex_unlock(&w->lock);
}

void dp_watch_stop(struct dp_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}
