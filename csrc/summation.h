/*
 * summation.h -- summation helpers shared by the kernels in cdfast.c, curve.c and gradient.c
 * (internal; not part of the cffi contract).  cdfast/_kernels/_numba.py mirrors them.
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

/* Lane geometry of the chunked passes (cdfast.c, gradient.c): a chunk of CDFAST_LANES
 * lanes of CDFAST_LANE steps (cdfast/_kernels/_numba.py: LANES, LANE). */
#define CDFAST_LANES 8
#define CDFAST_LANE 64

/* e[i] <- sum of x over (i, top of i's lane] for the 8 lanes of x[0 .. 8*CDFAST_LANE-1]
 * at once; tot[k] <- lane k's total.  Backwards, lane-interleaved: 8 independent chains,
 * all in registers (each chain's order is fixed, so the result does not depend on the
 * interleaving; cdfast/_kernels/_numba.py: _lane_scan8). */
CDFAST_INLINE void lane_scan8(double *restrict e, double *restrict tot, const double *restrict x)
{
    double l0 = 0.0, l1 = 0.0, l2 = 0.0, l3 = 0.0, l4 = 0.0, l5 = 0.0, l6 = 0.0, l7 = 0.0;
    for (size_t j = CDFAST_LANE; j-- > 0;) {
        e[j + 7 * CDFAST_LANE] = l7; l7 += x[j + 7 * CDFAST_LANE];
        e[j + 6 * CDFAST_LANE] = l6; l6 += x[j + 6 * CDFAST_LANE];
        e[j + 5 * CDFAST_LANE] = l5; l5 += x[j + 5 * CDFAST_LANE];
        e[j + 4 * CDFAST_LANE] = l4; l4 += x[j + 4 * CDFAST_LANE];
        e[j + 3 * CDFAST_LANE] = l3; l3 += x[j + 3 * CDFAST_LANE];
        e[j + 2 * CDFAST_LANE] = l2; l2 += x[j + 2 * CDFAST_LANE];
        e[j + 1 * CDFAST_LANE] = l1; l1 += x[j + 1 * CDFAST_LANE];
        e[j + 0 * CDFAST_LANE] = l0; l0 += x[j + 0 * CDFAST_LANE];
    }
    tot[0] = l0, tot[1] = l1, tot[2] = l2, tot[3] = l3;
    tot[4] = l4, tot[5] = l5, tot[6] = l6, tot[7] = l7;
}

/* Neumaier's compensated addition: (*hi + *lo) += x, with the rounding error of every
 * step kept in *lo.  The kernels call it once per chunk or segment, so its serial
 * latency is amortised (cdfast/_kernels/_numba.py: _neumaier_add, the same operations). */
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
