/* init.h - deterministic parameter initialisation shared by the families. */
#ifndef LSPO_MODELS_INIT_H
#define LSPO_MODELS_INIT_H

#include <stddef.h>
#include <stdint.h>

/* The random stream of tensor i of a model initialised from `seed`. */
uint64_t init_key(uint64_t seed, int i);
/* N(0, std) for elements [0, n) of the stream `key`: any element depends
 * only on (key, index), so the result is independent of threads. */
void init_normal(float *x, size_t n, uint64_t key, double std);
void init_const(float *x, size_t n, float v);

#endif
