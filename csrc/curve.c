/*
 * curve.c -- the fast whole curve: eq. (2.4) at every requested tau from an
 * exponential-sum approximation of the Cauchy kernel 1/x.
 *
 * The contract is in cdfast.h (cdfast_curve_fast); the node design and the
 * error bound are in cdfast/curve.py.  cdfast/_numba_curve.py follows this
 * file operation for operation.
 *
 * For every node m and step tau the kernel needs
 *     F_m(tau) = sum_{j<tau} w_j exp(-u_m (P_tau - P_j)).
 * The textbook recursion F <- exp(-u eta)(F + w) rounds every contribution
 * once per step (relative error ~T u).  Instead each node keeps an anchor A
 * (a past P): the distance d = P_tau - A as a compensated sum of the LRs
 * since the anchor, and R = sum_j w_j exp(u (P_j - A)) as a compensated sum.
 * F = exp(-u d) R is computed from d directly; once u d > REBASE the anchor
 * moves to P_tau (R <- F, d <- 0).  A contribution meets O(1 + decay/REBASE)
 * roundings, however long the run.
 */
#include <math.h>
#include "cdfast.h"

/* After a rebase every live factor exp(-u d) is >= exp(-REBASE): 1/E never
 * overflows.  Same value as REBASE in cdfast/_numba_curve.py. */
#define REBASE 2.0
/* Factors exp(-y) with y > CUTOFF are taken as 0 (the node's sum restarts
 * from 0): a contribution that entered after the anchor has decayed by more
 * than CUTOFF - REBASE, relative weight < exp(-48) ~ 1e-21.  Spares the exp
 * call and keeps subnormals out of the sums. */
#define CUTOFF 50.0
/* Nodes are split into a fixed number of contiguous groups (one per thread):
 * the summation order, and so the result, does not depend on the thread count. */
#define GROUPS 2

/* (*hi + *lo) += x, with the rounding error of the addition kept in *lo
 * (Knuth's branch-free TwoSum). */
static inline void two_sum(double *hi, double *lo, double x)
{
    double s = *hi + x;
    double bp = s - *hi;
    double err = (*hi - (s - bp)) + (x - bp);
    *hi = s;
    *lo = *lo + err;
}

/* out[k] = sum_{m0 <= i < m1} c_i F_i(at[k]) for k = 0 .. m-1. */
static void fast_group(const double *lr, const double *g, const int64_t *at, size_t m,
                       const double *u, const double *c, size_t m0, size_t m1, double *out)
{
    double r_hi[CDFAST_CURVE_MAX_NODES], r_lo[CDFAST_CURVE_MAX_NODES];
    double d_hi[CDFAST_CURVE_MAX_NODES], d_lo[CDFAST_CURVE_MAX_NODES];
    double e[CDFAST_CURVE_MAX_NODES];
    size_t nn = m1 - m0;
    for (size_t i = 0; i < nn; i++) {
        r_hi[i] = r_lo[i] = d_hi[i] = d_lo[i] = 0.0;
        e[i] = 1.0;
    }
    size_t last = (size_t)at[m - 1];
    size_t k = 0;
    double w = 0.0;
    for (size_t t = 0; t < last; t++) { /* t = tau - 1 */
        double eta = lr[t];
        if (t > 0) {
            double x = lr[t - 1];
            w = g ? (x * x) * g[t - 1] : x * x;
        }
        int record = (size_t)at[k] == t + 1;
        double acc = 0.0;
        for (size_t i = 0; i < nn; i++) {
            double rh = r_hi[i], rl = r_lo[i], dh = d_hi[i], dl = d_lo[i];
            if (t > 0) {
                /* w_{tau-1} enters at P_{tau-1}, where exp(u (P_{tau-1} - A))
                 * is 1/E of the previous step. */
                two_sum(&rh, &rl, w / e[i]);
                two_sum(&dh, &dl, eta);
            }
            double y = u[m0 + i] * (dh + dl);
            double ei = y <= CUTOFF ? exp(-y) : 0.0;
            double f = ei * (rh + rl);
            if (record)
                acc += c[m0 + i] * f;
            if (y > REBASE) {
                rh = f;
                rl = 0.0;
                dh = 0.0;
                dl = 0.0;
                ei = 1.0;
            }
            r_hi[i] = rh;
            r_lo[i] = rl;
            d_hi[i] = dh;
            d_lo[i] = dl;
            e[i] = ei;
        }
        if (record)
            out[k++] = acc;
    }
}

int cdfast_curve_fast(const double *lr, const double *grad_sq, size_t n,
                      const int64_t *at, size_t m, const double *u, const double *c,
                      size_t nodes, double *a_out, double *b_out, double *scratch)
{
    if (n == 0 || m == 0 || nodes == 0 || nodes > (size_t)GROUPS * CDFAST_CURVE_MAX_NODES)
        return CDFAST_BAD_ARGUMENT;
    for (size_t i = 0; i < m; i++)
        if (at[i] < 1 || (size_t)at[i] > n || (i > 0 && at[i] <= at[i - 1]))
            return CDFAST_BAD_ARGUMENT;
    size_t half = (nodes + 1) / 2;
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1)
#endif
    for (int grp = 0; grp < GROUPS; grp++) {
        if (grp == 0)
            fast_group(lr, grad_sq, at, m, u, c, 0, half, b_out);
        else
            fast_group(lr, grad_sq, at, m, u, c, half, nodes, scratch);
    }
    /* a_tau = 1/(2 P_tau) from a compensated prefix sum; b_tau combines the
     * groups in a fixed order. */
    double p_hi = 0.0, p_lo = 0.0;
    size_t k = 0;
    int status = CDFAST_OK;
    size_t last = (size_t)at[m - 1];
    for (size_t t = 0; t < last; t++) {
        two_sum(&p_hi, &p_lo, lr[t]);
        if ((size_t)at[k] == t + 1) {
            double eta = lr[t];
            a_out[k] = 0.5 / (p_hi + p_lo);
            if (eta > 0.0) {
                b_out[k] = 0.5 * ((grad_sq ? eta * grad_sq[t] : eta) + (b_out[k] + scratch[k]));
                if (!isfinite(b_out[k]))
                    status = CDFAST_NOT_FINITE;
            } else {
                b_out[k] = INFINITY;
            }
            k++;
        }
    }
    if (!isfinite(p_hi))
        status = CDFAST_NOT_FINITE;
    return status;
}
