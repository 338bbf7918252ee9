/*
 * gradient.c -- the last-iterate bound of eq. (2.4) and its exact gradient in O(T).
 * The contract is in cdfast.h; the derivation and the error bound are in
 * cdfast/gradient.py.  cdfast/_kernels/_numba_grad.py follows this file operation for
 * operation (compile with -ffp-contract=off: no fused multiply-add).
 *
 * Two passes and no work array proportional to n:
 *   1. backward over chunks of GRAD_CHUNK steps (cut from step 0 up; the top chunk
 *      may be short): the sum of the LRs above a chunk (its carry, the gap at the
 *      chunk's top step) goes to the chunk's first output slot, and the chunk's total
 *      (eight strided accumulators) is added to the carry with Neumaier compensation;
 *   2. forward over the chunks: read the carry back, rebuild the chunk's gaps (eight
 *      lanes scanned side by side, gap = (carry + lanes above) + in-lane suffix), one
 *      division per step, the step's own term, value term and adjoint weight
 *      w_j / gap_j^2, the forward prefix of the adjoint weights (eight lane chains;
 *      the running total across chunks with Neumaier compensation), and the gradient,
 *      which overwrites the slot read at the start.
 */
#include <float.h>
#include <math.h>
#include <string.h>
#include "cdfast.h"
#include "summation.h"

#define GRAD_CHUNK 512
#define GRAD_LANES CDFAST_LANES /* lane_scan8 (summation.h) / lane_prefix8 spell out the 8 chains */
#define GRAD_LANE CDFAST_LANE
#if GRAD_CHUNK != GRAD_LANES * GRAD_LANE
#error "GRAD_CHUNK must be GRAD_LANES lanes of CDFAST_LANE steps (summation.h)"
#endif

/* Pass 1's chunk total: eight strided accumulators over x[0 .. m-1], the remainder
 * into accumulator 0, then a fixed tree. */
static double strided_sum(const double *restrict x, size_t m)
{
    double p[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    size_t full = m / 8;
    for (size_t i = 0; i < full; i++)
        for (size_t k = 0; k < 8; k++)
            p[k] += x[8 * i + k];
    for (size_t i = 8 * full; i < m; i++)
        p[0] += x[i];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

/* f[i] <- sum of q over [bottom of i's lane, i) for the 8 lanes at once; tot[k] <-
 * lane k's total.  Forwards: the mirror of lane_scan8. */
static void lane_prefix8(double *restrict f, double *restrict tot, const double *restrict q)
{
    double l0 = 0.0, l1 = 0.0, l2 = 0.0, l3 = 0.0, l4 = 0.0, l5 = 0.0, l6 = 0.0, l7 = 0.0;
    for (size_t j = 0; j < GRAD_LANE; j++) {
        f[j + 0 * GRAD_LANE] = l0; l0 += q[j + 0 * GRAD_LANE];
        f[j + 1 * GRAD_LANE] = l1; l1 += q[j + 1 * GRAD_LANE];
        f[j + 2 * GRAD_LANE] = l2; l2 += q[j + 2 * GRAD_LANE];
        f[j + 3 * GRAD_LANE] = l3; l3 += q[j + 3 * GRAD_LANE];
        f[j + 4 * GRAD_LANE] = l4; l4 += q[j + 4 * GRAD_LANE];
        f[j + 5 * GRAD_LANE] = l5; l5 += q[j + 5 * GRAD_LANE];
        f[j + 6 * GRAD_LANE] = l6; l6 += q[j + 6 * GRAD_LANE];
        f[j + 7 * GRAD_LANE] = l7; l7 += q[j + 7 * GRAD_LANE];
    }
    tot[0] = l0, tot[1] = l1, tot[2] = l2, tot[3] = l3;
    tot[4] = l4, tot[5] = l5, tot[6] = l6, tot[7] = l7;
}

/* One chunk of pass 2 on GRAD_CHUNK-long x (and g, or NULL), written to o.  base:
 * the gap at the chunk's top; s_base: the adjoint prefix entering the chunk.  Sets
 * *part (the chunk's value terms, pairwise-summed) and *ssum (its adjoint total);
 * returns 1 for a NaN / negative entry, else 2 for a non-finite gradient, else 0. */
static int grad_chunk(const double *restrict x, const double *restrict g, double base, double s_base,
                      double cd, double g2, double *restrict o, double *part, double *ssum)
{
    double e[GRAD_CHUNK], q[GRAD_CHUNK], q2[GRAD_CHUNK], f[GRAD_CHUNK], tot[GRAD_LANES], vs[GRAD_LANES];
    int bad = 0, nf = 0;
    lane_scan8(e, tot, x);
    double s = 0.0;
    for (size_t k = GRAD_LANES; k-- > 0;) {
        double t = base + s;
        s += tot[k];
        size_t u = k * GRAD_LANE;
        if (g) {
            for (size_t i = u; i < u + GRAD_LANE; i++) {
                double r = 1.0 / (t + e[i]);
                double own = (x[i] * g[i]) * r;
                double term = x[i] * own;
                o[i] = own;
                q[i] = term;
                q2[i] = term * r;
                bad |= !(x[i] >= 0.0) || !(g[i] >= 0.0);
            }
        } else {
            for (size_t i = u; i < u + GRAD_LANE; i++) {
                double r = 1.0 / (t + e[i]);
                double own = x[i] * r;
                double term = x[i] * own;
                o[i] = own;
                q[i] = term;
                q2[i] = term * r;
                bad |= !(x[i] >= 0.0);
            }
        }
    }
    lane_prefix8(f, vs, q2);
    double v = 0.0;
    for (size_t k = 0; k < GRAD_LANES; k++) {
        double sl = s_base + v;
        v += vs[k];
        size_t u = k * GRAD_LANE;
        for (size_t i = u; i < u + GRAD_LANE; i++) {
            double gi = g2 * (o[i] - 0.5 * (sl + f[i])) - cd;
            o[i] = gi;
            nf |= !(fabs(gi) <= DBL_MAX);
        }
    }
    *part = tree_sum(q, GRAD_CHUNK);
    *ssum = v;
    return bad ? 1 : (nf ? 2 : 0);
}

int cdfast_last_iterate_grad(const double *lr, const double *grad_sq, size_t n, double d2, double g2,
                             double *out, double *grad)
{
    if (n == 0)
        return CDFAST_BAD_ARGUMENT;
    size_t m = n - 1; /* steps 0 .. n-2 have a gap term; step n-1 is the last */
    size_t nch = (m + GRAD_CHUNK - 1) / GRAD_CHUNK;
    /* Pass 1: carries, top chunk first, each stored in its chunk's first slot. */
    double c_hi = lr[n - 1], c_lo = 0.0;
    for (size_t c = nch; c-- > 0;) {
        size_t lo = c * GRAD_CHUNK, hi = lo + GRAD_CHUNK < m ? lo + GRAD_CHUNK : m;
        grad[lo] = c_hi + c_lo;
        neumaier_add(&c_hi, &c_lo, strided_sum(lr + lo, hi - lo));
    }
    double total = c_hi + c_lo;
    double cd = d2 * (0.5 / (total * total));
    /* Pass 2: chunks bottom up. */
    double b_hi = 0.0, b_lo = 0.0, s_hi = 0.0, s_lo = 0.0;
    int bad = !(lr[n - 1] >= 0.0) || (grad_sq && !(grad_sq[n - 1] >= 0.0)), flags = 0;
    double xb[GRAD_CHUNK], gb[GRAD_CHUNK], ob[GRAD_CHUNK];
    for (size_t c = 0; c < nch; c++) {
        size_t lo = c * GRAD_CHUNK, w = m - lo < GRAD_CHUNK ? m - lo : GRAD_CHUNK;
        double base = grad[lo], part, ssum;
        if (w == GRAD_CHUNK) {
            flags |= grad_chunk(lr + lo, grad_sq ? grad_sq + lo : NULL, base, s_hi + s_lo, cd, g2,
                              grad + lo, &part, &ssum);
        } else { /* the short top chunk, padded with zero steps (they add nothing) */
            for (size_t i = 0; i < GRAD_CHUNK; i++) {
                xb[i] = i < w ? lr[lo + i] : 0.0;
                gb[i] = grad_sq && i < w ? grad_sq[lo + i] : 0.0;
            }
            flags |= grad_chunk(xb, grad_sq ? gb : NULL, base, s_hi + s_lo, cd, g2, ob, &part, &ssum);
            memcpy(grad + lo, ob, w * sizeof *ob);
        }
        neumaier_add(&b_hi, &b_lo, part);
        neumaier_add(&s_hi, &s_lo, ssum);
    }
    double last = lr[n - 1];
    double gl = grad_sq ? grad_sq[n - 1] : 1.0;
    grad[n - 1] = g2 * (0.5 * gl - 0.5 * (s_hi + s_lo)) - cd;
    if (bad || (flags & 1))
        return CDFAST_BAD_INPUT;
    out[0] = 0.5 / total;
    out[1] = 0.5 * (last * gl + (b_hi + b_lo));
    if ((flags & 2) || !(isfinite(total) && isfinite(out[0]) && isfinite(out[1]) && fabs(grad[n - 1]) <= DBL_MAX))
        return CDFAST_NOT_FINITE;
    return CDFAST_OK;
}
