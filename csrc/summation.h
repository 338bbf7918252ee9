/*
 * summation.h -- summation helpers shared by the kernels in cdfast.c, curve.c and gradient.c
 * (internal; not part of the cffi contract).  cdfast/_numba.py mirrors them.
 */
#ifndef CDFAST_SUMMATION_H
#define CDFAST_SUMMATION_H
#include <math.h>
#include <stddef.h>

/* Always inlined, so that each caller (including curve.c's AVX2 clone) gets its own
 * vectorised copy. */
#if defined(__GNUC__)
#define CDFAST_INLINE static inline __attribute__((always_inline))
#else
#define CDFAST_INLINE static inline
/* Neumaier's compensated addition: (*hi + *lo) += x, with the rounding error of every
 * step kept in *lo.  The kernels call it once per chunk or segment, so its serial
 * latency is amortised (cdfast/_numba.py: _neumaier_add, the same operations). */
static inline void neumaier_add(double *hi, double *lo, double x)
{
    double s = *hi + x;
    if (fabs(*hi) >= fabs(x))
        *lo += (*hi - s) + x;
    else
        *lo += (x - s) + *hi;
    *hi = s;
}

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

/* Neumaier's compensated addition: (*hi + *lo) += x, with the rounding error of every
 * step kept in *lo.  The kernels call it once per chunk or segment, so its serial
 * latency is amortised (cdfast/_numba.py: _neumaier_add, the same operations). */
static inline void neumaier_add(double *hi, double *lo, double x)
{
    double s = *hi + x;
    if (fabs(*hi) >= fabs(x))
        *lo += (*hi - s) + x;
    else
        *lo += (x - s) + *hi;
    *hi = s;
}

#endif
