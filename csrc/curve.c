/*
 * curve.c -- the whole curve: eq. (2.4) at every requested tau from an
 * exponential-sum approximation of the Cauchy kernel 1/x (cdfast_curve_fast,
 * below), or from block moments for the loss models' search surrogates
 * (cdfast_curve_moments, at the end of the file).
 *
 * The contract is in cdfast.h (cdfast_curve_fast); the node design and the
 * error bound are in cdfast/curve.py.  cdfast/_kernels/_numba_curve.py follows this
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
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "cdfast.h"
#include "summation.h"

/* The node loops select with ?: (rebase, cutoff).  GCC if-converts them into
 * vector blends only when it may assume no floating-point traps; that changes
 * no rounding (contraction stays off, no reassociation). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* The helpers below must inline into the AVX2 clone of fast_group. */
#if defined(__GNUC__)
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE static inline
#endif

/* After a rebase every live factor exp(-u d) is >= exp(-REBASE): 1/E never
 * overflows.  Same value as REBASE in cdfast/_kernels/_numba_curve.py. */
#define REBASE 2.0
/* Factors exp(-y) with y > CUTOFF are taken as 0 (the node's sum restarts
 * from 0): a contribution that entered after the anchor has decayed by more
 * than CUTOFF - REBASE, relative weight < exp(-48) ~ 1e-21.  Spares the exp
 * evaluation and keeps subnormals out of the sums. */
#define CUTOFF 50.0
/* Nodes are split into a fixed number of contiguous groups (one per thread):
 * the summation order, and so the result, does not depend on the thread count. */
#define GROUPS 2

/* (*hi + *lo) += x, with the rounding error of the addition kept in *lo
 * (Knuth's branch-free TwoSum). */
ALWAYS_INLINE void two_sum(double *hi, double *lo, double x)
{
    double s = *hi + x;
    double bp = s - *hi;
    double err = (*hi - (s - bp)) + (x - bp);
    *hi = s;
    *lo = *lo + err;
}

/* exp(-y) for 0 <= y <= CUTOFF without a libm call, so that the loop over
 * nodes vectorises: exp(x) = 2^k exp(r), k = round(x / ln 2) (adding 1.5 * 2^52
 * rounds and leaves k in the low bits), r = x - k ln 2 in two parts
 * (Cody-Waite; k * LN2_HI is exact for |k| < 2^21), |r| <= ln(2)/2, exp(r) by
 * its Taylor polynomial of degree 13 (truncation < 5e-18; Estrin evaluation,
 * rounding <= 2.5 u as the terms' absolute sum e^|r| is at most 2 e^r):
 * relative error <= 3 u.  2^k (k >= -73) is built from its exponent bits.
 * Same constants and order in cdfast/_kernels/_numba_curve.py. */
#define SHIFT 6755399441055744.0 /* 1.5 * 2^52 */
#define SHIFT_BITS INT64_C(4843621399236968448)
#define LOG2E 1.4426950408889634
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10

ALWAYS_INLINE double expm_poly(double r)
{
    /* 1/n!, n = 0 .. 13, as Python computes 1.0 / math.factorial(n) */
    static const double P[14] = {
        1.0, 1.0, 0.5, 0.16666666666666666, 0.041666666666666664,
        0.008333333333333333, 0.001388888888888889, 0.0001984126984126984,
        2.48015873015873e-05, 2.7557319223985893e-06, 2.755731922398589e-07,
        2.505210838544172e-08, 2.08767569878681e-09, 1.6059043836821613e-10};
    /* Estrin's scheme: a dependency chain of 4 multiply-adds instead of
     * Horner's 13, so consecutive nodes overlap in the pipeline. */
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double b0 = P[0] + P[1] * r, b1 = P[2] + P[3] * r, b2 = P[4] + P[5] * r;
    double b3 = P[6] + P[7] * r, b4 = P[8] + P[9] * r, b5 = P[10] + P[11] * r;
    double b6 = P[12] + P[13] * r;
    double c0 = b0 + b1 * r2, c1 = b2 + b3 * r2, c2 = b4 + b5 * r2;
    double d0 = c0 + c1 * r4, d1 = c2 + b6 * r4;
    return d0 + d1 * r8;
}


ALWAYS_INLINE int64_t bits_of(double x)
{
    int64_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

ALWAYS_INLINE double double_of(int64_t b)
{
    double x;
    memcpy(&x, &b, sizeof x);
    return x;
}


/* On x86-64 with GCC, also compile an AVX2 clone of the node loops, chosen at
 * load time: 4 lanes instead of 2.  No FMA contraction either way
 * (-ffp-contract=off), so both clones round like the Numba kernel. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define CURVE_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef CURVE_CLONES
#define CURVE_CLONES
#endif

/* out[k] = sum_{m0 <= i < m1} c_i F_i(at[k]) for k = 0 .. m-1. */
CURVE_CLONES static void fast_group(const double *lr, const double *g, const int64_t *at, size_t m,
                       const double *u, const double *c, size_t m0, size_t m1, double *out)
{
    /* The nine per-node arrays are rows of one table whose row length is not a
     * multiple of 4 KiB: rows of exactly CDFAST_CURVE_MAX_NODES doubles would
     * map r_hi[i], r_lo[i], ... to the same L1 set and thrash it. */
    enum { RH, RL, DH, DL, E, Y, KD, SC, Q, ROWS };
    double s[ROWS][CDFAST_CURVE_MAX_NODES + 8];
    const double *uu = u + m0, *cc = c + m0;
    size_t nn = m1 - m0;
    for (size_t i = 0; i < nn; i++) {
        s[RH][i] = s[RL][i] = s[DH][i] = s[DL][i] = 0.0;
        s[E][i] = 1.0;
    }
    size_t last = (size_t)at[m - 1];
    size_t k = 0;
    size_t live = nn; /* nodes live..nn-1 hold the empty state (R = 0, d = 0, E = 1) */
    size_t top = nn;
    for (size_t t = 0; t < last; t++) { /* t = tau - 1 */
        /* At tau = 1 nothing has entered and the anchor is P_1: add zeros. */
        double eta = t > 0 ? lr[t] : 0.0;
        double w = 0.0;
        if (t > 0) {
            double x = lr[t - 1];
            w = g ? (x * x) * g[t - 1] : x * x;
        }
        /* Nodes with u eta_tau > CUTOFF (u is increasing) end this step in the
         * empty state whatever they held: only those below, and those not yet
         * emptied, need the work.  The boundary moves from the previous step's. */
        while (top < nn && !(uu[top] * eta > CUTOFF))
            top++;
        while (top > 0 && uu[top - 1] * eta > CUTOFF)
            top--;
        size_t n_do = top > live ? top : live;
        live = top;
        /* w_{tau-1} enters at P_{tau-1}, where exp(u (P_{tau-1} - A)) is 1/E of
         * the previous step; the distance to the anchor grows by eta_tau. */
        for (size_t i = 0; i < n_do; i++) {
            double rh = s[RH][i], rl = s[RL][i], dh = s[DH][i], dl = s[DL][i];
            two_sum(&rh, &rl, w / s[E][i]);
            two_sum(&dh, &dl, eta);
            s[RH][i] = rh;
            s[RL][i] = rl;
            s[DH][i] = dh;
            s[DL][i] = dl;
            double y = uu[i] * (dh + dl);
            s[Y][i] = y;
            s[KD][i] = -(y < CUTOFF ? y : CUTOFF) * LOG2E + SHIFT;
        }
        for (size_t i = 0; i < n_do; i++)
            s[SC][i] = double_of((bits_of(s[KD][i]) - SHIFT_BITS + 1023) << 52);
        for (size_t i = 0; i < n_do; i++) {
            double y = s[Y][i];
            double kf = s[KD][i] - SHIFT;
            double r = (-(y < CUTOFF ? y : CUTOFF) - kf * LN2_HI) - kf * LN2_LO;
            double ei = expm_poly(r) * s[SC][i];
            ei = y <= CUTOFF ? ei : 0.0;
            double f = ei * (s[RH][i] + s[RL][i]);
            s[Q][i] = cc[i] * f;
            int reb = y > REBASE;
            s[RH][i] = reb ? f : s[RH][i];
            s[RL][i] = reb ? 0.0 : s[RL][i];
            s[DH][i] = reb ? 0.0 : s[DH][i];
            s[DL][i] = reb ? 0.0 : s[DL][i];
            s[E][i] = reb ? 1.0 : ei;
        }
        if ((size_t)at[k] == t + 1)
            out[k++] = tree_sum(s[Q], n_do);
    }
}

int cdfast_curve_fast(const double *lr, const double *grad_sq, size_t n,
                      const int64_t *at, size_t m, const double *u, const double *c,
                      size_t nodes, int threads, double *a_out, double *b_out, double *scratch)
{
    if (n == 0 || m == 0 || nodes == 0 || nodes > (size_t)GROUPS * CDFAST_CURVE_MAX_NODES)
        return CDFAST_BAD_ARGUMENT;
    for (size_t i = 0; i < m; i++)
        if (at[i] < 1 || (size_t)at[i] > n || (i > 0 && at[i] <= at[i - 1]))
            return CDFAST_BAD_ARGUMENT;
    size_t half = (nodes + 1) / 2;
#ifdef _OPENMP
    if (threads <= 0 || threads > omp_get_max_threads())
        threads = omp_get_max_threads();
#pragma omp parallel for num_threads(threads < GROUPS ? threads : GROUPS) schedule(static, 1) if (threads > 1)
#else
    (void)threads;
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

/* ---- The whole curve by block moments (cdfast_curve_moments) ----
 *
 * For the search surrogates of the loss models, which need b to ~1e-7, not to the
 * last digit.  Steps are grouped in blocks of `block`.  For a block far from tau
 * (its LR mass <= MOM_FAR of the gap from its end to tau, gap D), every term of
 * the block is w_j / (D + d_j), d_j the block's LR mass after step j, and
 *     sum_j w_j / (D + d_j) = sum_n (-1)^n M_n / D^(n+1),  M_n = sum_j w_j d_j^n,
 * truncated after MOM_TERMS moments: relative error <= (1 + r) r^N / (1 - r) with
 * r = MOM_FAR, N = MOM_TERMS (7.7e-8).  Nearer blocks, and tau's own, are summed
 * term by term as in the exact pass.  Every gap is a suffix sum (no cancellation).
 * Time O(at[m-1] MOM_TERMS + sum over tau of (tau / block) MOM_TERMS + the near
 * steps), about 1/MOM_FAR blocks per tau on a smooth schedule.
 * cdfast/_kernels/_numba_curve.py (_curve_moments) follows this operation for operation. */
#define MOM_TERMS 8
#define MOM_FAR 0.125

int cdfast_curve_moments(const double *lr, const double *grad_sq, size_t n, const int64_t *at, size_t m,
                         size_t block, double *a_out, double *b_out, double *work, size_t work_size)
{
    if (n == 0 || m == 0 || block == 0)
        return CDFAST_BAD_ARGUMENT;
    for (size_t i = 0; i < m; i++)
        if (at[i] < 1 || (size_t)at[i] > n || (i > 0 && at[i] <= at[i - 1]))
            return CDFAST_BAD_ARGUMENT;
    size_t last = (size_t)at[m - 1];
    size_t nb = (last + block - 1) / block;
    if (work_size < nb * (1 + MOM_TERMS))
        return CDFAST_BAD_ARGUMENT;
    double *mass = work, *mom = work + nb;
    /* each block's LR mass and moments, its steps taken backward (d_j = mass after j) */
    for (size_t q = 0; q < nb; q++) {
        size_t lo = q * block, hi = lo + block < last ? lo + block : last;
        double *M = mom + q * MOM_TERMS;
        double d = 0.0;
        for (int i = 0; i < MOM_TERMS; i++)
            M[i] = 0.0;
        for (size_t j = hi; j-- > lo;) {
            double p = grad_sq ? lr[j] * lr[j] * grad_sq[j] : lr[j] * lr[j];
            for (int i = 0; i < MOM_TERMS; i++) {
                M[i] += p;
                p *= d;
            }
            d += lr[j];
        }
        mass[q] = d;
    }
    double p_hi = 0.0, p_lo = 0.0;
    size_t k = 0;
    int status = CDFAST_OK;
    for (size_t t = 0; t < last; t++) {
        two_sum(&p_hi, &p_lo, lr[t]);
        if ((size_t)at[k] != t + 1)
            continue;
        double eta = lr[t];
        a_out[k] = 0.5 / (p_hi + p_lo);
        if (eta > 0.0) {
            size_t qt = t / block;
            double gap = eta, acc = 0.0;
            for (size_t j = t; j-- > qt * block;) { /* tau's own block, term by term */
                acc += (grad_sq ? lr[j] * lr[j] * grad_sq[j] : lr[j] * lr[j]) / gap;
                gap += lr[j];
            }
            for (size_t q = qt; q-- > 0;) {
                if (mass[q] <= MOM_FAR * gap) { /* far: its moments, by Horner */
                    const double *M = mom + q * MOM_TERMS;
                    double inv = 1.0 / gap, h = M[MOM_TERMS - 1];
                    for (int i = MOM_TERMS - 1; i-- > 0;)
                        h = M[i] - inv * h;
                    acc += inv * h;
                    gap += mass[q];
                } else {
                    for (size_t j = (q + 1) * block; j-- > q * block;) {
                        acc += (grad_sq ? lr[j] * lr[j] * grad_sq[j] : lr[j] * lr[j]) / gap;
                        gap += lr[j];
                    }
                }
            }
            b_out[k] = 0.5 * ((grad_sq ? eta * grad_sq[t] : eta) + acc);
            if (!isfinite(b_out[k]))
                status = CDFAST_NOT_FINITE;
        } else {
            b_out[k] = INFINITY;
        }
        if (++k == m)
            break;
    }
    if (!isfinite(p_hi + p_lo))
        status = CDFAST_NOT_FINITE;
    return status;
}
