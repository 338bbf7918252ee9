/*
 * cdfast.c -- reference kernels for the convex last-iterate bounds.
 * The contract (indexing, outputs, status codes) is in cdfast.h.  The Numba
 * kernels in cdfast/_kernels/_numba.py follow this file operation for operation.
 */
#include <float.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "cdfast.h"
#include "summation.h"

/* CHUNK: elements per chunk of the average-iterate sums.  LCHUNK: elements
 * per chunk of the last-iterate pass; its lane suffixes and quotients live in
 * stack buffers (8 KiB, stays in L1; two more hold the zero-padded short
 * chunk).  The chunk is split into LANES contiguous lanes of LANE elements;
 * the scan runs the LANES suffix-sum chains side by side (independent chains:
 * the latency of one addition is paid once per LANES elements).  BLOCK_AVG is
 * the lane count of the average-iterate sums.  The error bound in
 * cdfast/bounds.py depends on these. */
#define CHUNK 1024
#define LCHUNK 512
#define LANES CDFAST_LANES      /* lane_scan8 (summation.h) spells out the 8 chains */
#define LANE CDFAST_LANE
#if LCHUNK != LANES * LANE
#error "LCHUNK must be LANES lanes of CDFAST_LANE steps (summation.h)"
#endif
#define BLOCK_AVG 8
/* The two-level pass (stream_last): from n = SEG_MIN on, SEGS segments. */
#define SEG_MIN ((size_t)1 << 19)
#define SEGS 64
/* Gaps in [PAIR_MIN, PAIR_MAX] may share a denominator: their products stay in
 * [2^-500, 2^500], far from overflow and from subnormals. */
#define PAIR_MIN 0x1p-250
#define PAIR_MAX 0x1p+250

/* w_j = eta_j^2 G_j^2, the numerator of every term of the single-sum form. */
static inline double weight(const double *lr, const double *g, size_t j)
{
    double w = lr[j] * lr[j];
    return g ? w * g[j] : w;
}

/* The loops below are plain elementwise loops (each lane keeps its own
 * operation order, so the compiler vectorises them without reassociating);
 * the Numba kernels use the same loops and round identically. */

/* Quotients and weights for lane k and its partner lane k + LANES/2 (x, gx, e
 * and q point at lane k; the partner is h = LCHUNK/2 further on), with
 * gap_i = tu + e[i] and gap_{i+h} = tv + e[i+h].  Paired: q[i] <- w_i/gap_i +
 * w_{i+h}/gap_{i+h} over one common denominator (one division per two terms;
 * the caller guarantees PAIR_MIN <= gap <= PAIR_MAX).  Unpaired: q[i] <-
 * w_i/gap_i and q[i+h] <- w_{i+h}/gap_{i+h}. */
static void lane_quotients(double *restrict q, const double *restrict x, const double *restrict gx,
                           const double *restrict e, double tu, double tv, int paired)
{
    const size_t h = LCHUNK / 2;
    if (paired && gx) {
        for (size_t i = 0; i < LANE; i++) {
            double gu = tu + e[i], gv = tv + e[i + h];
            double wu = (x[i] * x[i]) * gx[i], wv = (x[i + h] * x[i + h]) * gx[i + h];
            q[i] = (wu * gv + wv * gu) / (gu * gv);
        }
    } else if (paired) {
        for (size_t i = 0; i < LANE; i++) {
            double gu = tu + e[i], gv = tv + e[i + h];
            double wu = x[i] * x[i], wv = x[i + h] * x[i + h];
            q[i] = (wu * gv + wv * gu) / (gu * gv);
        }
    } else {
        for (size_t i = 0; i < LANE; i++) {
            double wu = x[i] * x[i], wv = x[i + h] * x[i + h];
            if (gx) {
                wu = wu * gx[i];
                wv = wv * gx[i + h];
            }
            q[i] = wu / (tu + e[i]);
            q[i + h] = wv / (tv + e[i + h]);
        }
    }
}

/* The sign checks, backwards through memory (the first touch of the chunk:
 * the hardware prefetcher follows a descending stream); nonzero if an x or gx
 * entry is NaN or negative. */
static int check(const double *restrict x, const double *restrict gx, size_t m)
{
    long long bad = 0;   /* 64-bit, like the lanes it flags */
    for (size_t i = m; i-- > 0;)
        bad |= !(x[i] >= 0.0);
    if (gx)
        for (size_t i = m; i-- > 0;)
            bad |= !(gx[i] >= 0.0);
    return bad != 0;
}


/*
 * The backward pass over the chunks of [stop, hi) (stop and hi - stop multiples of
 * LCHUNK, except that the bottom of the array, stop == 0, may end with a short chunk):
 * (*c_hi + *c_lo) is the carried sum of everything above hi on entry and above stop
 * on return; (*a_hi + *a_lo) += the terms w_j / gap_j of these steps.  Returns
 * nonzero if an entry of lr or g in the range is NaN or negative.
 *
 * Chunks of LCHUNK steps run from the top of the range down (the short last
 * chunk is copied into a buffer padded with zero steps at its top: they add
 * exactly nothing).  With base = the carried sum of everything above the
 * chunk: (1) the sign checks, reading the chunk backwards (its first touch;
 * the hardware prefetcher follows a descending stream); (2) one scan runs the
 * suffix sums of the LANES contiguous lanes side by side: e[i] = sum of i's
 * lane strictly above i; (3) lane starts t_k = base + s_k, s_k the sum of the
 * lanes above lane k (one addition per lane); (4) gap_i = t_k + e[i], the
 * weights and the quotients, two terms per division when the gaps allow it
 * (lane k pairs with lane k + LANES/2); (5) a pairwise sum of the quotients.
 * Chunk totals are carried with Neumaier compensation.
 */
static int stream_range(const double *lr, const double *g, size_t hi, size_t stop,
                        double *c_hi_io, double *c_lo_io, double *a_hi_io, double *a_lo_io)
{
    double e[LCHUNK], q[LCHUNK], xb[LCHUNK], gb[LCHUNK], tot[LANES], t[LANES];
    double c_hi = *c_hi_io, c_lo = *c_lo_io;   /* carry = sum_{t >= hi} eta_t */
    double a_hi = *a_hi_io, a_lo = *a_lo_io;   /* sum of w_j / gap_j so far */
    int bad = 0;

    while (hi > stop) {
        size_t m = hi - stop < LCHUNK ? hi - stop : LCHUNK;
        size_t lo = hi - m;
        const double *x = lr + lo, *gx = g ? g + lo : 0;
        double base = c_hi + c_lo;
        double s = 0.0;                    /* sum of the lanes above lane k */
        double part;
        int paired;

        if (m != LCHUNK) {                  /* the short last chunk: pad its top */
            for (size_t i = 0; i < LCHUNK; i++) {
                xb[i] = i < m ? x[i] : 0.0;
                gb[i] = gx && i < m ? gx[i] : 0.0;
            }
            x = xb;
            gx = gx ? gb : 0;
        }
        bad |= check(x, gx, LCHUNK);
        lane_scan8(e, tot, x);
        for (size_t k = LANES; k-- > 0;) {
            t[k] = base + s;
            s += tot[k];
        }

        /* The smallest gap is base (the chunk's top), the largest t_0 + e[0]
         * up to rounding (sums of non-negative numbers round monotonically;
         * the range leaves a factor 2^250 to spare). */
        paired = base >= PAIR_MIN && t[0] + e[0] <= PAIR_MAX;
        for (size_t k = 0; k < LANES / 2; k++) {
            size_t o = k * LANE;
            lane_quotients(q + o, x + o, gx ? gx + o : 0, e + o, t[k], t[k + LANES / 2], paired);
        }
        /* Constant sizes: every level's trip count is known in the inlined sum. */
        part = paired ? tree_sum(q, LCHUNK / 2) : tree_sum(q, LCHUNK);
        if (paired && !(part <= DBL_MAX)) {
            /* A product w * gap overflowed although the terms may be finite (a
             * huge LR above small gaps): redo this chunk one division per term. */
            for (size_t k = 0; k < LANES / 2; k++) {
                size_t o = k * LANE;
                lane_quotients(q + o, x + o, gx ? gx + o : 0, e + o, t[k], t[k + LANES / 2], 0);
            }
            part = tree_sum(q, LCHUNK);
        }

        neumaier_add(&a_hi, &a_lo, part);
        neumaier_add(&c_hi, &c_lo, s);
        hi = lo;
    }
    *c_hi_io = c_hi;
    *c_lo_io = c_lo;
    *a_hi_io = a_hi;
    *a_lo_io = a_lo;
    return bad;
}

/* Pass A of the segmented pass: (*t_hi + *t_lo) = sum of lr[stop .. hi-1], in
 * blocks of LCHUNK from the bottom up, each summed by BLOCK_AVG strided
 * accumulators (an elementwise loop: vectorises without reassociation; the
 * remainder of a short top block goes to accumulator 0), block sums carried
 * with Neumaier compensation.  No checks: pass B checks every entry. */
static void segment_sum(const double *lr, size_t stop, size_t hi, double *t_hi, double *t_lo)
{
    double s_hi = 0.0, s_lo = 0.0;
    for (size_t lo = stop; lo < hi; lo += LCHUNK) {
        size_t m = hi - lo < LCHUNK ? hi - lo : LCHUNK;
        const double *x = lr + lo;
        double p[BLOCK_AVG] = {0.0};
        size_t i = 0;
        for (; i + BLOCK_AVG <= m; i += BLOCK_AVG)
            for (size_t k = 0; k < BLOCK_AVG; k++)
                p[k] += x[i + k];
        for (; i < m; i++)
            p[0] += x[i];
        neumaier_add(&s_hi, &s_lo, ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7])));
    }
    *t_hi = s_hi;
    *t_lo = s_lo;
}

/* Top of segment k (k = 0 .. SEGS) of the two-level pass over [0, n-1): the C =
 * floor((n-1)/LCHUNK) whole chunks from the top are dealt out top down, C/SEGS
 * to each segment and one more to each of the top C % SEGS; the bottom segment
 * (k = SEGS-1) also takes the short chunk, so seg_top(n, SEGS) = 0. */
static size_t seg_top(size_t n, size_t k)
{
    size_t c = (n - 1) / LCHUNK, l = c / SEGS, r = c % SEGS;
    return k >= SEGS ? 0 : n - 1 - (k * l + (k < r ? k : r)) * LCHUNK;
}

/* The OpenMP threads available to one call (1 without OpenMP). */
static int max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Segment k of the two-level pass, pass A: its total (compensated). */
static void seg_sum(const double *lr, size_t n, size_t k, double *hi, double *lo)
{
    segment_sum(lr, seg_top(n, k + 1), seg_top(n, k), hi, lo);
}

/* Segment k, pass B, from the carry (c_hi + c_lo) entering it: the carry out and
 * the segment's terms; returns nonzero for a NaN or negative entry. */
static int seg_terms(const double *lr, const double *g, size_t n, size_t k, double c_hi, double c_lo,
                     double *c_hi_out, double *c_lo_out, double *a_hi_out, double *a_lo_out)
{
    double a_hi = 0.0, a_lo = 0.0;
    int bad = stream_range(lr, g, seg_top(n, k), seg_top(n, k + 1), &c_hi, &c_lo, &a_hi, &a_lo);
    *c_hi_out = c_hi;
    *c_lo_out = c_lo;
    *a_hi_out = a_hi;
    *a_lo_out = a_lo;
    return bad;
}

/* The results of the two-level pass, one entry per segment. */
struct segments {
    double c_hi[SEGS], c_lo[SEGS];   /* carry out of the segment (pass B) */
    double a_hi[SEGS], a_lo[SEGS];   /* its terms */
    int bad[SEGS];
};

/* P_n is the carry out of the bottom segment; the terms are added top down. */
static int seg_finish(const struct segments *S, int bad, double *total, double *terms)
{
    double a_hi = 0.0, a_lo = 0.0;
    for (size_t k = 0; k < SEGS; k++) {
        neumaier_add(&a_hi, &a_lo, S->a_hi[k]);
        neumaier_add(&a_hi, &a_lo, S->a_lo[k]);
        bad |= S->bad[k];
    }
    *total = S->c_hi[SEGS - 1] + S->c_lo[SEGS - 1];
    *terms = a_hi + a_lo;
    return bad;
}

/* The two-level pass on one thread: segment by segment, top down.  The carry
 * entering segment k is eta_n plus the totals of segments 0..k-1, each added as
 * (hi, lo) with Neumaier compensation, top down. */
static void segments_serial(const double *lr, const double *g, size_t n, struct segments *S)
{
    double c_hi = lr[n - 1], c_lo = 0.0;
    for (size_t k = 0; k < SEGS; k++) {
        double t_hi, t_lo, in_hi = c_hi, in_lo = c_lo;
        seg_sum(lr, n, k, &t_hi, &t_lo);
        neumaier_add(&c_hi, &c_lo, t_hi);
        neumaier_add(&c_hi, &c_lo, t_lo);
        S->bad[k] = seg_terms(lr, g, n, k, in_hi, in_lo, &S->c_hi[k], &S->c_lo[k], &S->a_hi[k], &S->a_lo[k]);
    }
}

/*
 * The two-level pass on several threads, without waiting for any of them.
 *
 * A fixed list of 2 SEGS tasks (pass A and pass B of every segment) is dealt out
 * dynamically: a thread takes the next task from an atomic ticket.  Pass A runs
 * LOOKAHEAD segments ahead of pass B (A_0 .. A_7, then B_0, A_8, B_1, A_9, ...), so a
 * segment is read twice while it is still in cache.  Pass B of segment k needs the
 * totals of segments 0..k-1: a published total is read, a missing one (its thread was
 * descheduled, or is still busy) is computed on the spot.  When the tickets run out,
 * each thread computes whatever pass B is still unpublished.  So no thread ever waits
 * for another: a thread that the OS deschedules holds up nobody, however long it is
 * away; the only wait is the end of the parallel region.  Every task is a pure function
 * of (lr, g, n, k), computed in one fixed operation order, so whichever copy is
 * published, the result is the serial one, bit for bit, whatever the thread count.
 * Publishing: compare-and-swap the state 0 -> 1, write, store 2 (release); readers
 * take a result only in state 2 (acquire).
 */
#if defined(_OPENMP) && defined(__GNUC__)
#define CDFAST_DYNAMIC 1
#define LOOKAHEAD 8

struct dynamic_pass {
    struct segments out;
    double t_hi[SEGS], t_lo[SEGS];   /* pass A totals */
    int a_state[SEGS], b_state[SEGS];
    long long ticket;
};

static int claim(int *state)
{
    int expect = 0;
    return __atomic_compare_exchange_n(state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void dyn_total(struct dynamic_pass *D, const double *lr, size_t n, size_t k, double *hi, double *lo)
{
    if (__atomic_load_n(&D->a_state[k], __ATOMIC_ACQUIRE) == 2) {
        *hi = D->t_hi[k];
        *lo = D->t_lo[k];
        return;
    }
    seg_sum(lr, n, k, hi, lo);
    if (claim(&D->a_state[k])) {
        D->t_hi[k] = *hi;
        D->t_lo[k] = *lo;
        __atomic_store_n(&D->a_state[k], 2, __ATOMIC_RELEASE);
    }
}

static void dyn_terms(struct dynamic_pass *D, const double *lr, const double *g, size_t n, size_t k)
{
    double c_hi = lr[n - 1], c_lo = 0.0, ch, cl, ah, al;
    int bad;
    for (size_t j = 0; j < k; j++) {
        double t_hi, t_lo;
        dyn_total(D, lr, n, j, &t_hi, &t_lo);
        neumaier_add(&c_hi, &c_lo, t_hi);
        neumaier_add(&c_hi, &c_lo, t_lo);
    }
    bad = seg_terms(lr, g, n, k, c_hi, c_lo, &ch, &cl, &ah, &al);
    if (claim(&D->b_state[k])) {
        D->out.c_hi[k] = ch;
        D->out.c_lo[k] = cl;
        D->out.a_hi[k] = ah;
        D->out.a_lo[k] = al;
        D->out.bad[k] = bad;
        __atomic_store_n(&D->b_state[k], 2, __ATOMIC_RELEASE);
    }
}

static void dyn_worker(struct dynamic_pass *D, const double *lr, const double *g, size_t n)
{
    const long long tasks = 2 * SEGS, body = LOOKAHEAD + 2 * (SEGS - LOOKAHEAD);
    for (;;) {
        long long t = __atomic_fetch_add(&D->ticket, 1, __ATOMIC_RELAXED);
        if (t >= tasks)
            break;
        if (t < LOOKAHEAD) {                       /* A_0 .. A_{L-1} */
            double hi, lo;
            dyn_total(D, lr, n, (size_t)t, &hi, &lo);
        } else if (t < body) {                     /* B_k, A_{k+L} alternately */
            long long u = t - LOOKAHEAD;
            if (u % 2 == 0) {
                dyn_terms(D, lr, g, n, (size_t)(u / 2));
            } else {
                double hi, lo;
                dyn_total(D, lr, n, (size_t)(u / 2 + LOOKAHEAD), &hi, &lo);
            }
        } else {                                   /* the last L pass B */
            dyn_terms(D, lr, g, n, (size_t)(SEGS - LOOKAHEAD + (t - body)));
        }
    }
    /* Finish whatever is unpublished instead of waiting for it. */
    for (size_t k = 0; k < SEGS; k++)
        if (__atomic_load_n(&D->b_state[k], __ATOMIC_ACQUIRE) == 0)
            dyn_terms(D, lr, g, n, k);
}
#endif

/*
 * One backward pass over lr[0..n-1] (n >= 1):
 *   *total = P_n (compensated), *terms = sum_{j<n-1} w_j / (P_n - P_j).
 * Returns nonzero if an entry of lr or g is NaN or negative.
 *
 * n < SEG_MIN: one stream_range over [0, n-1), carry starting at eta_n.
 * n >= SEG_MIN: the two-level pass.  [0, n-1) is cut into SEGS segments fixed
 * by n alone (seg_top).  Pass A sums each segment (segment_sum); the carry
 * entering segment k is eta_n plus the totals of segments 0..k-1, added top down
 * with Neumaier compensation; pass B runs stream_range on every segment from its
 * carry; the segments' terms are added top down with Neumaier compensation.
 * Every segment's arithmetic is fixed, so with `threads` > 1 (the tasks dealt out
 * to that many OpenMP threads dynamically, see struct dynamic_pass) the result does
 * not depend on the thread count and equals the serial one bit for bit.
 */
static int stream_last(const double *lr, const double *g, size_t n, int threads,
                       double *total, double *terms)
{
    double c_hi = lr[n - 1], c_lo = 0.0, a_hi = 0.0, a_lo = 0.0;
    int bad = !(lr[n - 1] >= 0.0) || (g && !(g[n - 1] >= 0.0));

    if (n < SEG_MIN) {
        bad |= stream_range(lr, g, n - 1, 0, &c_hi, &c_lo, &a_hi, &a_lo);
        *total = c_hi + c_lo;
        *terms = a_hi + a_lo;
        return bad;
    }
#ifdef CDFAST_DYNAMIC
    if (threads > 1) {
        struct dynamic_pass D = {0};
#pragma omp parallel num_threads(threads)
        dyn_worker(&D, lr, g, n);
        return seg_finish(&D.out, bad, total, terms);
    }
#else
    (void)threads;
#endif
    {
        struct segments S;
        segments_serial(lr, g, n, &S);
        return seg_finish(&S, bad, total, terms);
    }
}

/* Coefficients (a, b) of eq. (2.4) at tau = n; +inf b when eta_n == 0.  With
 * `threads` > 1, long passes use that many OpenMP threads (same result). */
static int last_iterate(const double *lr, const double *g, size_t n, int threads, double *a, double *b)
{
    double total, terms;
    int bad = stream_last(lr, g, n, threads, &total, &terms);
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
    return last_iterate(lr, grad_sq, n, max_threads(), &out[0], &out[1]);
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
        double p[BLOCK_AVG] = {0.0}, w[BLOCK_AVG] = {0.0};
        size_t i = 0;
        for (; i + BLOCK_AVG <= m; i += BLOCK_AVG)
            for (size_t k = 0; k < BLOCK_AVG; k++) {
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

/* Rows of a stacked call: one row per task, dealt out dynamically (a thread
 * takes the next row when it is free), each row on one thread; a single row
 * uses the multi-threaded pass.  Small batches run on the calling thread. */
#define ROWS_PARALLEL_MIN ((size_t)1 << 15)   /* elements */

typedef int (*row_kernel)(const double *lr, const double *g, size_t n, int threads, double *a, double *b);

static int last_row(const double *lr, const double *g, size_t n, int threads, double *a, double *b)
{
    return last_iterate(lr, g, n, threads, a, b);
}

static int average_row(const double *lr, const double *g, size_t n, int threads, double *a, double *b)
{
    double out[2];
    int status;
    (void)threads;
    status = cdfast_average_iterate(lr, g, n, out);
    *a = out[0];
    *b = out[1];
    return status;
}

static int rows_apply(row_kernel kernel, const double *lr, const int64_t *lr_rows, const double *grad_sq,
                      const int64_t *g_rows, size_t rows, size_t n, int threads, double *a_out,
                      double *b_out, int *status_out)
{
    int status = CDFAST_OK;
    if (n == 0)
        return CDFAST_BAD_ARGUMENT;
    if (threads <= 0 || threads > max_threads())
        threads = max_threads();
    if (rows == 1) {
        status_out[0] = kernel(lr + (size_t)lr_rows[0] * n, grad_sq ? grad_sq + (size_t)g_rows[0] * n : 0, n,
                               threads, &a_out[0], &b_out[0]);
        return status_out[0];
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(max : status) \
    if (threads > 1 && rows * n >= ROWS_PARALLEL_MIN)
#endif
    for (ptrdiff_t r = 0; r < (ptrdiff_t)rows; r++) {
        int s = kernel(lr + (size_t)lr_rows[r] * n, grad_sq ? grad_sq + (size_t)g_rows[r] * n : 0, n, 0,
                       &a_out[r], &b_out[r]);
        status_out[r] = s;
        if (s > status)
            status = s;
    }
    return status;
}

int cdfast_last_iterate_rows(const double *lr, const int64_t *lr_rows, const double *grad_sq,
                             const int64_t *g_rows, size_t rows, size_t n, int threads, double *a_out,
                             double *b_out, int *status_out)
{
    return rows_apply(last_row, lr, lr_rows, grad_sq, g_rows, rows, n, threads, a_out, b_out, status_out);
}

int cdfast_average_iterate_rows(const double *lr, const int64_t *lr_rows, const double *grad_sq,
                                const int64_t *g_rows, size_t rows, size_t n, int threads, double *a_out,
                                double *b_out, int *status_out)
{
    return rows_apply(average_row, lr, lr_rows, grad_sq, g_rows, rows, n, threads, a_out, b_out, status_out);
}

int cdfast_curve_exact(const double *lr, const double *grad_sq, size_t n,
                       const int64_t *at, size_t m, int threads, double *a_out, double *b_out)
{
    int status = CDFAST_OK;
    for (size_t i = 0; i < m; i++)
        if (at[i] < 1 || (size_t)at[i] > n || (i > 0 && at[i] <= at[i - 1]))
            return CDFAST_BAD_ARGUMENT;
    if (threads <= 0 || threads > max_threads())
        threads = max_threads();
    /* Each tau is independent: one backward pass of length at[i].  Largest
     * first under dynamic scheduling keeps the threads balanced. */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(max : status) if (threads > 1)
#endif
    for (ptrdiff_t k = (ptrdiff_t)m - 1; k >= 0; k--) {
        int s = last_iterate(lr, grad_sq, (size_t)at[k], 0, &a_out[k], &b_out[k]);
        if (s > status)
            status = s;
    }
    return status;
}
