/*
 * Drives every C kernel over the edge cases, for AddressSanitizer/UBSan or valgrind
 * (tests/test_memcheck.py builds and runs it).  Exits nonzero if a kernel returns a
 * status other than the one its contract in csrc/cdfast.h promises.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cdfast.h"

static int failures = 0;

static void expect(int got, int want, const char *what, size_t n)
{
    if (got != want) {
        fprintf(stderr, "FAIL %s (n=%zu): status %d, expected %d\n", what, n, got, want);
        failures++;
    }
}

/* Exactly-sized heap copies, so any read past the end is caught. */
static double *filled(size_t n, double v)
{
    double *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = v * (1.0 + (double)(i % 7) / 7.0);
    return x;
}

static void all_kernels(const double *lr, const double *g, size_t n, int want_last, int want_avg)
{
    double out[2];
    expect(cdfast_last_iterate(lr, g, n, out), want_last, "last_iterate", n);
    expect(cdfast_average_iterate(lr, g, n, out), want_avg, "average_iterate", n);
    if (n == 0)
        return;
    int64_t *at = malloc(n * sizeof *at);
    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *scratch = malloc(n * sizeof *scratch);
    for (size_t i = 0; i < n; i++)
        at[i] = (int64_t)i + 1;
    cdfast_curve_exact(lr, g, n, at, n, 0, a, b);  /* status depends on the case; memory is what is checked */
    double u[4] = {1e-3, 1e-1, 1e-2, 1.0}, c[4] = {1e-3, 1e-1, 1e-2, 1.0};
    cdfast_curve_fast(lr, g, n, at, n, u, c, 4, 0, a, b, scratch);
    size_t blocks[] = {1, 3, 64, n};
    for (int k = 0; k < 4; k++) {  /* moments: exactly-sized work, and one double short */
        size_t nb = (n + blocks[k] - 1) / blocks[k];
        double *work = malloc(nb * 9 * sizeof *work);
        cdfast_curve_moments(lr, g, n, at, n, blocks[k], a, b, work, nb * 9);
        expect(cdfast_curve_moments(lr, g, n, at, n, blocks[k], a, b, work, nb * 9 - 1), CDFAST_BAD_ARGUMENT,
               "curve_moments short work", n);
        free(work);
    }
    free(at), free(a), free(b), free(scratch);
}

int main(void)
{
    size_t sizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 1023, 1024, 1025, 2048, 4097};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        double *lr = filled(n, 1e-3), *g = filled(n, 2.0);
        all_kernels(lr, NULL, n, CDFAST_OK, CDFAST_OK);
        all_kernels(lr, g, n, CDFAST_OK, CDFAST_OK);
        size_t where[] = {0, n / 2, n - 1};
        for (int w = 0; w < 3; w++) {
            double keep = lr[where[w]];
            lr[where[w]] = NAN;
            all_kernels(lr, NULL, n, CDFAST_BAD_INPUT, CDFAST_BAD_INPUT);
            lr[where[w]] = -1.0;
            all_kernels(lr, NULL, n, CDFAST_BAD_INPUT, CDFAST_BAD_INPUT);
            lr[where[w]] = INFINITY;
            all_kernels(lr, NULL, n, CDFAST_NOT_FINITE, CDFAST_NOT_FINITE);
            lr[where[w]] = keep;
            g[where[w]] = NAN;
            all_kernels(lr, g, n, CDFAST_BAD_INPUT, CDFAST_BAD_INPUT);
            g[where[w]] = 2.0;
        }
        lr[n - 1] = 0.0;  /* zero final LR: +inf b, status OK (the Python layer refuses it) */
        double out[2];
        expect(cdfast_last_iterate(lr, NULL, n, out), CDFAST_OK, "zero final", n);
        if (!isinf(out[1]) && n > 1) {
            fprintf(stderr, "FAIL zero final LR (n=%zu): b = %g, expected +inf\n", n, out[1]);
            failures++;
        }
        all_kernels(lr, NULL, n, CDFAST_OK, n == 1 ? CDFAST_NOT_FINITE : CDFAST_OK);  /* n == 1: all zero */
        free(lr), free(g);
        double *tiny = filled(n, 5e-324), *huge = filled(n, 1e300), *zero = filled(n, 0.0);
        /* subnormal LRs: a = 1/(2P) is +inf with status OK; cdfast.bounds refuses it */
        all_kernels(tiny, NULL, n, CDFAST_OK, CDFAST_OK);
        /* huge LRs: eta^2 overflows (a single step has no square in b) */
        all_kernels(huge, NULL, n, n == 1 ? CDFAST_OK : CDFAST_NOT_FINITE, CDFAST_NOT_FINITE);
        all_kernels(zero, NULL, n, CDFAST_OK, CDFAST_NOT_FINITE);
        free(tiny), free(huge), free(zero);
    }
    /* Long inputs take the two-level (segmented) pass; the curve is checked at a few taus
     * only (it costs one pass per tau). */
    size_t longs[] = {(1 << 19) - 1, 1 << 19, (1 << 19) + 1, (1 << 20) + 3, 64 * 512 * 17 + 511 + 1};
    for (size_t k = 0; k < sizeof longs / sizeof *longs; k++) {
        size_t n = longs[k];
        double *lr = filled(n, 1e-3), *g = filled(n, 2.0), out[2], a[3], b[3];
        int64_t at[3] = {1, (int64_t)n / 2, (int64_t)n};
        expect(cdfast_last_iterate(lr, NULL, n, out), CDFAST_OK, "long last_iterate", n);
        expect(cdfast_last_iterate(lr, g, n, out), CDFAST_OK, "long last_iterate, grad_sq", n);
        expect(cdfast_curve_exact(lr, g, n, at, 3, 0, a, b), CDFAST_OK, "long curve_exact", n);
        size_t where[] = {0, n / 3, n - 2, n - 1};
        for (int w = 0; w < 4; w++) {
            double keep = lr[where[w]];
            lr[where[w]] = NAN;
            expect(cdfast_last_iterate(lr, NULL, n, out), CDFAST_BAD_INPUT, "long NaN", n);
            lr[where[w]] = -1.0;
            expect(cdfast_last_iterate(lr, g, n, out), CDFAST_BAD_INPUT, "long negative", n);
            lr[where[w]] = INFINITY;
            expect(cdfast_last_iterate(lr, NULL, n, out), CDFAST_NOT_FINITE, "long inf", n);
            lr[where[w]] = keep;
            g[where[w]] = NAN;
            expect(cdfast_last_iterate(lr, g, n, out), CDFAST_BAD_INPUT, "long NaN grad_sq", n);
            g[where[w]] = 2.0;
        }
        lr[n - 1] = 0.0;
        expect(cdfast_last_iterate(lr, NULL, n, out), CDFAST_OK, "long zero final", n);
        if (!isinf(out[1])) {
            fprintf(stderr, "FAIL zero final LR (n=%zu): b = %g, expected +inf\n", n, out[1]);
            failures++;
        }
        free(lr), free(g);
    }
    /* Stacked rows: exactly sized (rows, n) blocks through index maps (a broadcast
     * grad_sq row), a NaN in one row, one long row (multi-threaded pass), n == 0. */
    {
        size_t shapes[][2] = {{1, 7}, {3, 513}, {5, 2048}, {2, (1 << 19) + 5}, {1, (1 << 19) + 5}, {0, 9}};
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            size_t rows = shapes[k][0], n = shapes[k][1], alloc = rows ? rows : 1;
            double *lr = filled(alloc * n, 1e-3), *g = filled(n, 2.0);
            double *a = malloc(alloc * sizeof *a), *b = malloc(alloc * sizeof *b);
            int64_t *map = malloc(alloc * sizeof *map), *gmap = calloc(alloc, sizeof *gmap);
            int *st = malloc(alloc * sizeof *st);
            for (size_t r = 0; r < alloc; r++)
                map[r] = (int64_t)(alloc - 1 - r);
            for (int threads = 0; threads <= 2; threads++) {
                expect(cdfast_last_iterate_rows(lr, map, g, gmap, rows, n, threads, a, b, st), CDFAST_OK,
                       "last_iterate_rows", n);
                expect(cdfast_average_iterate_rows(lr, map, NULL, gmap, rows, n, threads, a, b, st), CDFAST_OK,
                       "average_iterate_rows", n);
            }
            if (rows) {
                lr[(rows - 1) * n + n / 2] = NAN;
                expect(cdfast_last_iterate_rows(lr, map, NULL, gmap, rows, n, 2, a, b, st), CDFAST_BAD_INPUT,
                       "rows NaN", n);
                if (st[0] != CDFAST_BAD_INPUT) {  /* map[0] is the last row */
                    fprintf(stderr, "FAIL rows NaN (n=%zu): status of the bad row is %d\n", n, st[0]);
                    failures++;
                }
            }
            free(lr), free(g), free(a), free(b), free(map), free(gmap), free(st);
        }
        double one1 = 1.0, a1, b1;
        int64_t m0 = 0;
        int s1;
        expect(cdfast_last_iterate_rows(&one1, &m0, NULL, &m0, 1, 0, 0, &a1, &b1, &s1), CDFAST_BAD_ARGUMENT,
               "rows n == 0", 0);
    }
    /* n == 0 and malformed `at` are refused, never read */
    double one = 1.0, out[2], a[2], b[2];
    expect(cdfast_last_iterate(&one, NULL, 0, out), CDFAST_BAD_ARGUMENT, "n == 0", 0);
    expect(cdfast_average_iterate(&one, NULL, 0, out), CDFAST_BAD_ARGUMENT, "n == 0", 0);
    int64_t bad_at[3][2] = {{0, 1}, {1, 2}, {1, 1}};
    for (int k = 0; k < 3; k++)
        expect(cdfast_curve_exact(&one, NULL, 1, bad_at[k], 2, 1, a, b), CDFAST_BAD_ARGUMENT, "bad at", 1);
    double work[9];
    for (int k = 0; k < 3; k++)
        expect(cdfast_curve_moments(&one, NULL, 1, bad_at[k], 2, 1, a, b, work, 9), CDFAST_BAD_ARGUMENT,
               "moments bad at", 1);
    int64_t at1 = 1;
    expect(cdfast_curve_moments(&one, NULL, 1, &at1, 1, 0, a, b, work, 9), CDFAST_BAD_ARGUMENT, "block 0", 1);
    expect(cdfast_curve_moments(&one, NULL, 0, &at1, 1, 1, a, b, work, 9), CDFAST_BAD_ARGUMENT, "moments n 0", 0);
    if (failures)
        return 1;
    puts("memcheck: all kernels clean");
    return 0;
}
