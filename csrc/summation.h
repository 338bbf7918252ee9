/*
 * summation.h -- summation helpers shared by the kernels in cdfast.c and curve.c
 * (internal; not part of the cffi contract).  cdfast/_numba.py mirrors them.
 */
#ifndef CDFAST_SUMMATION_H
#define CDFAST_SUMMATION_H
#include <stddef.h>

/* Always inlined, so that each caller (including curve.c's AVX2 clone) gets its own
 * vectorised copy. */
#if defined(__GNUC__)
#define CDFAST_INLINE static inline __attribute__((always_inline))
#else
#define CDFAST_INLINE static inline
#endif

/* Pairwise summation in place (destroys q): fold the top half onto the bottom half.
 * Each level is an elementwise loop (vectorises without reassociation); the error
 * grows with log2(n), not n. */
CDFAST_INLINE double tree_sum(double *q, size_t n)
{
    while (n > 1) {
        size_t h = n / 2, o = n - h;
        for (size_t i = 0; i < h; i++)
            q[i] = q[i] + q[o + i];
        n = o;
    }
    return n == 1 ? q[0] : 0.0;
}

#endif
