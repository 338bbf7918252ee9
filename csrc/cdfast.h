/*
 * cdfast.h -- the C contract of cdfast's reference kernels.
 *
 * Conventions shared with the Numba kernels in cdfast/_kernels/_numba.py:
 *   - lr[0 .. n-1] holds eta_1 .. eta_T (paper indexing, see docs/math.md section 1).
 *   - grad_sq is NULL (constant G: every G_t^2 = 1) or an array of n per-step G_t^2.
 *   - Inputs first, outputs last.  Kernels never allocate on the heap and never
 *     validate beyond what is free inside their single pass: the Python layer
 *     has checked shapes and dtypes; the kernels flag NaN / negative / overflow
 *     through the returned status so the caller can name the bad index.
 *   - Every function returns CDFAST_OK (0) or a positive status below.
 *   - Same algorithm and same floating-point operation order as the Numba
 *     kernels, so the two backends agree to the last bit (compile with
 *     -ffp-contract=off: a fused multiply-add would round differently).
 *
 * Only the block between CDEF-BEGIN and CDEF-END is read by cffi; keep it
 * free of preprocessor directives.
 */
#ifndef CDFAST_H
#define CDFAST_H
#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
enum {
    CDFAST_OK = 0,
    CDFAST_BAD_INPUT = 1,   /* an entry of lr or grad_sq is NaN or negative */
    CDFAST_NOT_FINITE = 2,  /* an input is +inf, or a sum overflowed */
    CDFAST_BAD_ARGUMENT = 3 /* n == 0, or an `at` index out of range / unsorted */
};

/*
 * Last-iterate bound of eq. (2.4) at tau = n, as its two coefficients:
 *   out[0] = a = 1 / (2 P_n)
 *   out[1] = b = (1/2) [ eta_n G_n^2 + sum_{j<n} eta_j^2 G_j^2 / (P_n - P_j) ]
 * so that bound = L_* + D^2 a + G^2 b.  One backward streaming pass: the gaps
 * P_n - P_j are suffix sums (no cancellation), accumulated in chunks of 8
 * lanes scanned side by side, whose totals are carried with Neumaier
 * compensation; two terms share a division when the chunk's gaps lie in
 * [2^-250, 2^250].  From n = 2^19 on, the pass is two-level: 64 segments
 * fixed by n, each summed first (its carry = the sum of everything above it)
 * and then streamed from its carry; on OpenMP threads the tasks are dealt
 * out dynamically and no thread waits for another (a descheduled thread stalls
 * nobody); the result does not depend on the thread count.  O(n) time, O(1)
 * memory (fixed stack buffers).
 * Relative error of a and b <= ~94 u (u = 2^-53) barring subnormal
 * intermediates, see cdfast/bounds.py.  If lr[n-1] == 0 the result is +inf (status OK);
 * the Python layer refuses that input before calling.
 */
int cdfast_last_iterate(const double *lr, const double *grad_sq, size_t n, double *out);

/*
 * Average-iterate bound of eq. (2.3):
 *   out[0] = a = 1 / (2 P_n),  out[1] = b = sum_j eta_j^2 G_j^2 / (2 P_n).
 */
int cdfast_average_iterate(const double *lr, const double *grad_sq, size_t n, double *out);

/*
 * Stacked inputs: the same two kernels on `rows` rows of n steps each.  Row r
 * reads lr + lr_rows[r] * n and (unless grad_sq is NULL) grad_sq + g_rows[r] * n
 * (index maps, so that broadcast rows are not copied), and writes a_out[r],
 * b_out[r] and its status to status_out[r]; returns the largest status.  Each row
 * equals the one-row call bit for bit.  Up to `threads` OpenMP threads (<= 0: all
 * of omp_get_max_threads(), never more; 1: the calling thread only): rows are dealt
 * out one at a time (dynamic
 * scheduling), each row on one thread; a single row uses the multi-threaded pass
 * of cdfast_last_iterate.
 */
int cdfast_last_iterate_rows(const double *lr, const int64_t *lr_rows, const double *grad_sq,
                             const int64_t *g_rows, size_t rows, size_t n, int threads, double *a_out,
                             double *b_out, int *status_out);
int cdfast_average_iterate_rows(const double *lr, const int64_t *lr_rows, const double *grad_sq,
                                const int64_t *g_rows, size_t rows, size_t n, int threads, double *a_out,
                                double *b_out, int *status_out);

/*
 * The last-iterate coefficients at every requested iteration:
 *   a_out[i], b_out[i] = coefficients of eq. (2.4) at tau = at[i] (1-based),
 * computed exactly (one backward pass per tau, O(sum at[i]) work).
 * at must be strictly increasing in [1, n]; entries whose bound is infinite
 * (eta_tau == 0 after a positive LR, or P_tau == 0) are +inf.  The taus are
 * dealt out, largest first, to up to `threads` OpenMP threads (<= 0: all; 1: the
 * calling thread only); the result does not depend on the count.
 */
int cdfast_curve_exact(const double *lr, const double *grad_sq, size_t n,
                       const int64_t *at, size_t m, int threads, double *a_out, double *b_out);
/*
 * The fast whole curve (cdfast/curve.py designs the nodes and proves the bound):
 *   a_out[i] = 1 / (2 P_tau),
 *   b_out[i] = (1/2) [ eta_tau G_tau^2 + sum_k c_k sum_{j<tau} w_j exp(-u_k (P_tau - P_j)) ]
 * at tau = at[i] (1-based, strictly increasing in [1, n]), for the
 * exponential-sum nodes u[0..nodes-1] with weights c[0..nodes-1] (nodes <=
 * 2 * CDFAST_CURVE_MAX_NODES; the halves u[0..h-1] and u[h..nodes-1],
 * h = (nodes + 1) / 2, run on two threads and must each be increasing).  O(at[m-1] * nodes) time; per-node state lives
 * on the stack; scratch holds m doubles (the second node group's partial
 * sums).  Entries with eta_tau == 0 are +inf in b_out; P_tau == 0 gives +inf
 * in a_out.  Nodes run in two fixed groups, in parallel under OpenMP when
 * `threads` allows (<= 0: all threads; 1: both groups on the calling thread; the
 * result is the same).
 */
enum { CDFAST_CURVE_MAX_NODES = 1024 };
int cdfast_curve_fast(const double *lr, const double *grad_sq, size_t n,
                      const int64_t *at, size_t m, const double *u, const double *c,
                      size_t nodes, int threads, double *a_out, double *b_out, double *scratch);

/*
 * The curve to a relative error of 7.7e-8 in b, for the loss models' search
 * surrogates (csrc/curve.c explains the method): a_out, b_out as cdfast_curve_exact
 * at tau = at[i] (strictly increasing in [1, n]), blocks of `block` steps summed by
 * their first 8 moments where they lie far from tau.  work holds
 * nb * 9 doubles, nb = ceil(at[m-1] / block) (work_size says how many it holds;
 * fewer is CDFAST_BAD_ARGUMENT).  Entries with eta_tau == 0 are +inf in b_out
 * (status OK); a non-finite LR gives CDFAST_NOT_FINITE (the Python layer checks the
 * input first).  One thread.
 */
int cdfast_curve_moments(const double *lr, const double *grad_sq, size_t n, const int64_t *at, size_t m,
                         size_t block, double *a_out, double *b_out, double *work, size_t work_size);

/* ---- Gradient of the bound (csrc/gradient.c) ---- */
/*
 * Eq. (2.4) at tau = n and its exact gradient, for B = d2 * a + g2 * b
 * (d2 = D^2, g2 = G^2; L_* adds nothing to the gradient):
 *   out[0] = a = 1 / (2 P_n),  out[1] = b (as cdfast_last_iterate),
 *   grad[k] = dB / d lr[k] = -d2 / (2 P_n^2)
 *             + g2 [ lr[k] G_k^2 / (P_n - P_{k+1})   (k < n-1;  G_{n-1}^2 / 2 for k = n-1)
 *                    - (1/2) sum_{j<k, j<n-1} lr[j]^2 G_j^2 / (P_n - P_{j+1})^2 ]
 * (0-based k; P_i = lr[0] + ... + lr[i-1]).  Two passes, backward then forward, in
 * O(n) time; grad doubles as the store for the chunk carries, so the only other
 * memory is fixed stack buffers.  The gaps are suffix sums and every sum adds
 * non-negative terms: |error of grad[k]| <= ~85 u (g2 (own_k + S_k / 2) + d2 / (2 P^2)),
 * see cdfast/gradient.py.  Status as cdfast_last_iterate; with lr[n-1] == 0 the
 * result is not finite (the Python layer refuses that input before calling).
 */
int cdfast_last_iterate_grad(const double *lr, const double *grad_sq, size_t n, double d2, double g2,
                             double *out, double *grad);
/* CDEF-END */

#endif
