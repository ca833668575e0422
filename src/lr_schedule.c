/*
 * lr_schedule.c - learning rate per step: linear warmup, then constant,
 * linear or cosine decay to a floor (as HF Trainer's and llm.c's schedules).
 */
#include <math.h>

#include "lspo.h"

struct lspo_lr_schedule lspo_lr_schedule_constant(double lr)
{
	return (struct lspo_lr_schedule){ .lr = lr, .min_lr = lr, .warmup = 0, .total = 0,
	                                  .decay = LSPO_LR_CONSTANT };
}

double lspo_lr_at(const struct lspo_lr_schedule *s, long step)
{
	if (step < 1)
		step = 1;
	/* Step 1 already moves (lr / warmup): a first step at lr 0 would waste a batch. */
	if (step <= s->warmup)
		return s->lr * (double)step / (double)s->warmup;
	long span = s->total - s->warmup;
	if (s->decay == LSPO_LR_CONSTANT || span <= 0)
		return s->lr;
	/* The first step after warmup runs at lr; the last one just above min_lr. */
	double done = (double)(step - s->warmup - 1) / (double)span;   /* in [0, 1) */
	if (done > 1)
		done = 1;
	double shape = s->decay == LSPO_LR_COSINE ? 0.5 * (1 + cos(M_PI * done)) : 1 - done;
	return s->min_lr + (s->lr - s->min_lr) * shape;
}
