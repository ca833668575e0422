/*
 * test_lr_schedule.c - warmup and decay values of lspo_lr_at at the steps
 * where they are known exactly, and the shape in between.
 */
#include "common.h"

#define NEAR(a, b) (fabs((a) - (b)) <= 1e-12 * fabs(b) + 1e-18)

static void check_decay(enum lspo_lr_decay decay)
{
	struct lspo_lr_schedule s = { .lr = 1e-3, .min_lr = 1e-4, .warmup = 10, .total = 100,
	                              .decay = decay };
	CHECK(NEAR(lspo_lr_at(&s, 1), 1e-4), "warmup step 1: %g", lspo_lr_at(&s, 1));
	CHECK(NEAR(lspo_lr_at(&s, 5), 5e-4), "warmup step 5: %g", lspo_lr_at(&s, 5));
	CHECK(NEAR(lspo_lr_at(&s, 10), 1e-3), "end of warmup: %g", lspo_lr_at(&s, 10));
	CHECK(NEAR(lspo_lr_at(&s, 11), 1e-3), "first decay step: %g", lspo_lr_at(&s, 11));
	/* 90 decay steps: step 56 is half-way for both shapes. */
	CHECK(NEAR(lspo_lr_at(&s, 56), 5.5e-4), "half-way (decay %d): %g", decay, lspo_lr_at(&s, 56));
	double last = lspo_lr_at(&s, 100);
	CHECK(last > 1e-4 && last < 1.2e-4, "last step (decay %d): %g", decay, last);
	CHECK(NEAR(lspo_lr_at(&s, 500), 1e-4), "past the end: %g", lspo_lr_at(&s, 500));
	for (long t = 11; t < 100; t++)
		CHECK(lspo_lr_at(&s, t + 1) < lspo_lr_at(&s, t), "decay not strictly falling at step %ld", t);
	/* Cosine stays above the straight line in the first half, below it in the second. */
	if (decay == LSPO_LR_COSINE) {
		s.decay = LSPO_LR_LINEAR;
		double lin30 = lspo_lr_at(&s, 30), lin80 = lspo_lr_at(&s, 80);
		s.decay = LSPO_LR_COSINE;
		CHECK(lspo_lr_at(&s, 30) > lin30 && lspo_lr_at(&s, 80) < lin80, "cosine shape");
	}
}

int main(void)
{
	struct lspo_lr_schedule c = lspo_lr_schedule_constant(3e-4);
	for (long t = 1; t <= 1000; t += 111)
		CHECK(lspo_lr_at(&c, t) == 3e-4, "constant at step %ld: %g", t, lspo_lr_at(&c, t));
	c.warmup = 4;
	CHECK(NEAR(lspo_lr_at(&c, 2), 1.5e-4) && lspo_lr_at(&c, 5) == 3e-4, "warmup then constant");
	check_decay(LSPO_LR_LINEAR);
	check_decay(LSPO_LR_COSINE);
	/* No warmup: decay starts at lr on step 1. */
	struct lspo_lr_schedule s = { .lr = 1e-3, .min_lr = 0, .warmup = 0, .total = 4,
	                              .decay = LSPO_LR_LINEAR };
	CHECK(NEAR(lspo_lr_at(&s, 1), 1e-3) && NEAR(lspo_lr_at(&s, 3), 5e-4) && NEAR(lspo_lr_at(&s, 4), 2.5e-4),
	      "linear without warmup: %g %g %g", lspo_lr_at(&s, 1), lspo_lr_at(&s, 3), lspo_lr_at(&s, 4));
	return test_failures ? 1 : 0;
}
