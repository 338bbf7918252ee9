/*
 * cdfast.c -- reference kernels for the convex last-iterate bounds.
 * The contract (indexing, outputs, status codes) is in cdfast.h.  The Numba
 * kernels in cdfast/_numba.py follow this file operation for operation.
 */
#include <math.h>
#include "cdfast.h"

/* Elements per chunk.  A chunk's gaps live in a stack buffer (8 KiB, stays in
 * L1); CHUNK / BLOCK bounds the length of the plain-summation chains and so
 * the rounding error (see the error bound in cdfast/bounds.py). */
#define CHUNK 1024
#define BLOCK 8

/* Neumaier's compensated addition: (*hi + *lo) += x, with the rounding error
 * of every step kept in *lo.  Used once per chunk, so its serial latency is
 * amortised over CHUNK elements. */
static inline void neumaier_add(double *hi, double *lo, double x)
{
    double s = *hi + x;
    if (fabs(*hi) >= fabs(x))
        *lo += (*hi - s) + x;
    else
        *lo += (x - s) + *hi;
    *hi = s;
}

/* w_j = eta_j^2 G_j^2, the numerator of every term of the single-sum form. */
static inline double weight(const double *lr, const double *g, size_t j)
{
    double w = lr[j] * lr[j];
    return g ? w * g[j] : w;
}

/*
 * One backward pass over lr[0..n-1] (n >= 1):
 *   *total = P_n (compensated), *terms = sum_{j<n-1} w_j / (P_n - P_j).
 * Returns nonzero if an entry of lr or g is NaN or negative.
 *
 * Why chunks and blocks: the gaps P_n - P_j are a suffix scan, a serial
 * chain of additions.  Splitting each chunk into blocks of BLOCK elements
 * makes the chain one addition per block (the in-block partial sums are
 * independent of each other), and the divisions then run over a buffer in a
 * loop the compiler vectorises.  Memory is read strictly backwards and once,
 * which the hardware prefetcher follows.
 */
static int stream_last(const double *lr, const double *g, size_t n,
                       double *total, double *terms)
{
    double gap[CHUNK];
    double c_hi = lr[n - 1], c_lo = 0.0;   /* carry = sum_{t >= hi} eta_t */
    double a_hi = 0.0, a_lo = 0.0;         /* sum of w_j / gap_j so far */
    int bad = !(lr[n - 1] >= 0.0) || (g && !(g[n - 1] >= 0.0));
    size_t hi = n - 1;

    while (hi > 0) {
        size_t m = hi < CHUNK ? hi : CHUNK;
        size_t lo = hi - m;
        const double *x = lr + lo;
        const double *gx = g ? g + lo : 0;
        double base = c_hi + c_lo;
        double s = 0.0;                    /* sum of x[k] for k past the block */
        size_t r0 = m % BLOCK;

        /* Scan: gap[i] = base + sum_{k > i, k < m} x[k]. */
        for (size_t blk = m; blk > r0; blk -= BLOCK) {
            double l = 0.0;
            for (size_t i = blk; i-- > blk - BLOCK;) {
                gap[i] = base + (s + l);
                l += x[i];
                bad |= !(x[i] >= 0.0);
            }
            s += l;
        }
        for (size_t i = r0; i-- > 0;) {
            gap[i] = base + s;
            s += x[i];
            bad |= !(x[i] >= 0.0);
        }
        if (gx)
            for (size_t i = 0; i < m; i++)
                bad |= !(gx[i] >= 0.0);

        /* Divide and sum with BLOCK independent accumulators (vectorisable
         * without reassociation: each lane keeps its own order). */
        double acc[BLOCK] = {0.0};
        size_t i = 0;
        for (; i + BLOCK <= m; i += BLOCK)
            for (size_t k = 0; k < BLOCK; k++)
                acc[k] += weight(x, gx, i + k) / gap[i + k];
        for (; i < m; i++)
            acc[0] += weight(x, gx, i) / gap[i];
        double part = ((acc[0] + acc[1]) + (acc[2] + acc[3]))
                    + ((acc[4] + acc[5]) + (acc[6] + acc[7]));

        neumaier_add(&a_hi, &a_lo, part);
        neumaier_add(&c_hi, &c_lo, s);
        hi = lo;
    }
    *total = c_hi + c_lo;
    *terms = a_hi + a_lo;
    return bad;
}

/* Coefficients (a, b) of eq. (2.4) at tau = n; +inf b when eta_n == 0. */
static int last_iterate(const double *lr, const double *g, size_t n, double *a, double *b)
{
    double total, terms;
    int bad = stream_last(lr, g, n, &total, &terms);
    if (bad)
        return CDFAST_BAD_INPUT;
    *a = 0.5 / total;
    *b = lr[n - 1] > 0.0 ? 0.5 * ((g ? lr[n - 1] * g[n - 1] : lr[n - 1]) + terms) : INFINITY;
    if (!isfinite(total) || (lr[n - 1] > 0.0 && !isfinite(*b)))
        return CDFAST_NOT_FINITE;
    return CDFAST_OK;
}

int cdfast_last_iterate(const double *lr, const double *grad_sq, size_t n, double *out)
{
    if (n == 0)
        return CDFAST_BAD_ARGUMENT;
    return last_iterate(lr, grad_sq, n, &out[0], &out[1]);
}

int cdfast_average_iterate(const double *lr, const double *grad_sq, size_t n, double *out)
{
    double p_hi = 0.0, p_lo = 0.0, w_hi = 0.0, w_lo = 0.0;
    int bad = 0;
    if (n == 0)
        return CDFAST_BAD_ARGUMENT;
    for (size_t lo = 0; lo < n; lo += CHUNK) {
        size_t m = n - lo < CHUNK ? n - lo : CHUNK;
        const double *x = lr + lo;
        const double *gx = grad_sq ? grad_sq + lo : 0;
        double p[BLOCK] = {0.0}, w[BLOCK] = {0.0};
        size_t i = 0;
        for (; i + BLOCK <= m; i += BLOCK)
            for (size_t k = 0; k < BLOCK; k++) {
                p[k] += x[i + k];
                w[k] += weight(x, gx, i + k);
                bad |= !(x[i + k] >= 0.0) || (gx && !(gx[i + k] >= 0.0));
            }
        for (; i < m; i++) {
            p[0] += x[i];
            w[0] += weight(x, gx, i);
            bad |= !(x[i] >= 0.0) || (gx && !(gx[i] >= 0.0));
        }
        neumaier_add(&p_hi, &p_lo, ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7])));
        neumaier_add(&w_hi, &w_lo, ((w[0] + w[1]) + (w[2] + w[3])) + ((w[4] + w[5]) + (w[6] + w[7])));
    }
    if (bad)
        return CDFAST_BAD_INPUT;
    double total = p_hi + p_lo;
    out[0] = 0.5 / total;
    out[1] = (w_hi + w_lo) / (2.0 * total);
    if (!isfinite(total) || !isfinite(out[1]))
        return CDFAST_NOT_FINITE;
    return CDFAST_OK;
}

int cdfast_curve_exact(const double *lr, const double *grad_sq, size_t n,
                       const int64_t *at, size_t m, double *a_out, double *b_out)
{
    int status = CDFAST_OK;
    for (size_t i = 0; i < m; i++)
        if (at[i] < 1 || (size_t)at[i] > n || (i > 0 && at[i] <= at[i - 1]))
            return CDFAST_BAD_ARGUMENT;
    /* Each tau is independent: one backward pass of length at[i].  Largest
     * first under dynamic scheduling keeps the threads balanced. */
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) reduction(max : status)
#endif
    for (ptrdiff_t k = (ptrdiff_t)m - 1; k >= 0; k--) {
        int s = last_iterate(lr, grad_sq, (size_t)at[k], &a_out[k], &b_out[k]);
        if (s > status)
            status = s;
    }
    return status;
}
