/* init.c - counter-based random initialisation of parameter tensors. */
#include <math.h>

#include "models/init.h"

static inline uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t init_key(uint64_t seed, int i)
{
	return splitmix64(seed) ^ splitmix64(0x6c73706f00000000ull + (uint64_t)i);
}

/* Element 2k and 2k+1 are the Box-Muller pair of counters 2k, 2k+1. */
void init_normal(float *x, size_t n, uint64_t key, double std)
{
	const double two_pi = 6.283185307179586476925286766559;
	for (size_t i = 0; i < n; i += 2) {
		uint64_t a = splitmix64(key ^ splitmix64(i));
		uint64_t b = splitmix64(key ^ splitmix64(i + 1));
		double u1 = ((double)(a >> 11) + 1.0) * 0x1p-53;   /* (0, 1] */
		double u2 = (double)(b >> 11) * 0x1p-53;           /* [0, 1) */
		double r = std * sqrt(-2.0 * log(u1));
		x[i] = (float)(r * cos(two_pi * u2));
		if (i + 1 < n)
			x[i + 1] = (float)(r * sin(two_pi * u2));
	}
}

void init_const(float *x, size_t n, float v)
{
	for (size_t i = 0; i < n; i++)
		x[i] = v;
}
