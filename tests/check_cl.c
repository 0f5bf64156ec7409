/* check_cl.c - the OpenCL layer on a real device (PoCL here; any device works).
 *
 * Kernels run on fresh random inputs (seed printed on failure) and are
 * compared with plain C; outputs are poisoned before each run.
 *
 * About the shared context: an OpenCL context does not survive fork() (PoCL's
 * worker threads, and GPU drivers' state, stay in the parent), and Check forks
 * each test unless CK_FORK=no. So the unchecked fixture must not touch OpenCL
 * in the parent: it prepares the shared environment (a scratch cache dir),
 * and qe_test_cl() opens the context once per process - once per test when
 * forking, once for the whole case with CK_FORK=no. The unchecked teardown
 * closes it.
 */
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cl.h"
#include "dtype.h"
#include "log.h"
#include "testutil.h"

/* ---- helpers ---- */

static uint64_t rng_state;

static void rng_seed(void)
{
    rng_state = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 16 ^ (uint64_t)clock();
    if (!rng_state)
        rng_state = 1;
}

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float rnd_float(void) { return (float)(rng() % 2000001) / 1000.0f - 1000.0f; }

#define OK(expr)                                                                   \
    do {                                                                           \
        qe_status st_ = (expr);                                                    \
        ck_assert_msg(st_ == QE_OK, "%s -> %s: %s", #expr, qe_status_str(st_), qe_errmsg()); \
    } while (0)

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* Case-insensitive substring test, written here independently of lib/cl. */
static int icontains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return 0;
}

/* Number of files in dir ending in ".bin". */
static int count_bins(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls '%s' 2>/dev/null | grep -c '\\.bin$'", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

/* Path of the only .bin file in dir (static buffer), or NULL. */
static const char *only_bin(const char *dir)
{
    static char path[4200];
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls '%s'/*.bin 2>/dev/null", dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    int ok = fgets(path, sizeof path, p) != NULL;
    pclose(p);
    if (!ok)
        return NULL;
    path[strcspn(path, "\n")] = '\0';
    return path;
}

/* ---- shared context (see the top of the file) ---- */


/* ---- per-test scratch dir (checked fixture) ---- */

static char *tmp;

static void tmp_setup(void)
{
    rng_seed();
    tmp = qe_test_tmpdir();
    ck_assert_ptr_nonnull(tmp);
    unsetenv("QEVAL_KERNEL_DIR");
    unsetenv("QEVAL_NO_CACHE");
    unsetenv("QEVAL_DEVICE");
}

static void tmp_teardown(void)
{
    qe_test_rmtree(tmp);
    free(tmp);
    tmp = NULL;
    unsetenv("QEVAL_KERNEL_DIR");
    unsetenv("QEVAL_NO_CACHE");
    unsetenv("QEVAL_DEVICE");
    if (qe_test_cl_cache_dir())
        setenv("QEVAL_CACHE_DIR", qe_test_cl_cache_dir(), 1);
}

/* Run fill_f32 from program p over n floats and check every value. */
static void check_fill(qe_cl *cl, cl_program p, size_t n)
{
    cl_kernel k = NULL;
    cl_mem x = NULL;
    float *h = malloc(n * sizeof *h), v = rnd_float();
    cl_uint nn = (cl_uint)n;
    ck_assert_ptr_nonnull(h);
    OK(qe_cl_kernel(p, "fill_f32", &k));
    OK(qe_cl_alloc(cl, n * sizeof(float), QE_CL_RW, NULL, &x));
    float poison = NAN;
    OK(qe_cl_fill(cl, x, &poison, sizeof poison, 0, n * sizeof(float)));
    OK(qe_cl_args(k, 3, sizeof x, &x, sizeof v, &v, sizeof nn, &nn));
    size_t g = round_up(n, 64), l = 64;
    OK(qe_cl_run(cl, k, 1, &g, &l, NULL));
    OK(qe_cl_read(cl, x, 0, n * sizeof(float), h));
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(h[i] == v, "fill_f32[%zu] = %g, want %g (seed %llu)", i, h[i], v,
                      (unsigned long long)rng_state);
    qe_cl_free(x);
    qe_cl_kernel_free(k);
    free(h);
}

/* ---- core ---- */

START_TEST(test_list)
{
    qe_cl_device_info *list = NULL;
    size_t n = 0;
    OK(qe_cl_list(&list, &n));
    ck_assert_uint_gt(n, 0);
    for (size_t i = 0; i < n; i++) {
        const qe_cl_device_info *d = &list[i];
        ck_assert_int_eq(d->index, (int)i);
        ck_assert_uint_gt(strlen(d->name), 0);
        ck_assert_uint_gt(strlen(d->platform_name), 0);
        ck_assert_msg(!strncmp(d->platform_version, "OpenCL ", 7), "%s", d->platform_version);
        ck_assert_msg(!strncmp(d->c_version, "OpenCL C ", 9), "%s", d->c_version);
        ck_assert_uint_gt(d->global_mem, 0);
        ck_assert_uint_gt(d->max_alloc, 0);
        ck_assert_uint_gt(d->compute_units, 0);
        ck_assert_uint_gt(d->max_wg_size, 0);
        ck_assert_uint_ge(d->mem_base_align, 1);
        ck_assert_ptr_nonnull(d->extensions);
        ck_assert_ptr_nonnull(strstr("GPU CPU ACCELERATOR OTHER", d->type_str));
        /* Each listed extension is found. */
        char *copy = strdup(d->extensions), *save = NULL;
        ck_assert_ptr_nonnull(copy);
        for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save))
            ck_assert_msg(qe_cl_has_extension(d, t), "%s", t);
        free(copy);
    }
    /* Independent count: clinfo (a dependency of qeval) lists the same devices. */
    FILE *p = popen("clinfo -l 2>/dev/null | grep -c 'Device #'", "r");
    int clinfo_n = -1;
    if (p) {
        if (fscanf(p, "%d", &clinfo_n) != 1)
            clinfo_n = -1;
        pclose(p);
    }
    if (clinfo_n > 0)
        ck_assert_int_eq(clinfo_n, (int)n);
    qe_cl_list_free(list, n);
    qe_cl_list_free(NULL, 0);

    /* Whole-word matching on a made-up list. */
    qe_cl_device_info fake;
    memset(&fake, 0, sizeof fake);
    char ext[] = "cl_khr_fp16 cl_khr_fp64  cl_nv_x";
    fake.extensions = ext;
    ck_assert(qe_cl_has_extension(&fake, "cl_khr_fp16"));
    ck_assert(qe_cl_has_extension(&fake, "cl_khr_fp64"));
    ck_assert(qe_cl_has_extension(&fake, "cl_nv_x"));
    ck_assert(!qe_cl_has_extension(&fake, "cl_khr_fp"));
    ck_assert(!qe_cl_has_extension(&fake, "khr_fp16"));
    ck_assert(!qe_cl_has_extension(&fake, "cl_nv"));
    ck_assert(!qe_cl_has_extension(&fake, ""));
    ck_assert(!qe_cl_has_extension(NULL, "cl_khr_fp16"));
}
END_TEST

START_TEST(test_select)
{
    qe_cl_device_info *list = NULL;
    size_t n = 0, idx = 99;
    OK(qe_cl_list(&list, &n));
    /* Default: first GPU, else first CPU, else device 0 - computed here. */
    size_t want = n;
    for (size_t i = 0; i < n && want == n; i++)
        if (list[i].type & CL_DEVICE_TYPE_GPU)
            want = i;
    for (size_t i = 0; i < n && want == n; i++)
        if (list[i].type & CL_DEVICE_TYPE_CPU)
            want = i;
    if (want == n)
        want = 0;
    OK(qe_cl_select(list, n, NULL, &idx));
    ck_assert_uint_eq(idx, want);
    OK(qe_cl_select(list, n, "", &idx));
    ck_assert_uint_eq(idx, want);

    char num[16];
    snprintf(num, sizeof num, "%zu", n - 1);
    OK(qe_cl_select(list, n, num, &idx));
    ck_assert_uint_eq(idx, n - 1);
    OK(qe_cl_select(list, n, "0", &idx));
    ck_assert_uint_eq(idx, 0);

    /* A case-flipped middle part of the last device's name picks a device
     * whose platform or device name contains it. */
    const char *name = list[n - 1].name;
    size_t len = strlen(name), from = len / 3, take = len - from < 5 ? len - from : 5;
    char part[8] = {0};
    for (size_t i = 0; i < take; i++) {
        char c = name[from + i];
        part[i] = (char)(islower((unsigned char)c) ? toupper((unsigned char)c)
                                                   : tolower((unsigned char)c));
    }
    OK(qe_cl_select(list, n, part, &idx));
    ck_assert_msg(icontains(list[idx].name, part) || icontains(list[idx].platform_name, part),
                  "'%s' picked %s", part, list[idx].name);
    ck_assert_uint_le(idx, n - 1);

    /* Platform name substring. */
    OK(qe_cl_select(list, n, list[0].platform_name, &idx));
    ck_assert_uint_eq(idx, 0);

    /* Type keywords. */
    for (size_t i = 0; i < n; i++)
        if (list[i].type & CL_DEVICE_TYPE_CPU) {
            OK(qe_cl_select(list, n, "CPU", &idx));
            ck_assert(list[idx].type & CL_DEVICE_TYPE_CPU);
            break;
        }

    /* QEVAL_DEVICE applies when no choice is given; a choice overrides it. */
    setenv("QEVAL_DEVICE", num, 1);
    OK(qe_cl_select(list, n, NULL, &idx));
    ck_assert_uint_eq(idx, n - 1);
    OK(qe_cl_select(list, n, "0", &idx));
    ck_assert_uint_eq(idx, 0);
    unsetenv("QEVAL_DEVICE");
    qe_cl_list_free(list, n);
}
END_TEST

START_TEST(test_open)
{
    qe_cl *cl = qe_test_cl();
    const qe_cl_device_info *d = qe_cl_device(cl);
    ck_assert_uint_gt(strlen(d->name), 0);
    ck_assert_int_eq(qe_cl_profiling(cl), 0);
    OK(qe_cl_flush(cl));
    OK(qe_cl_finish(cl));
    qe_cl_close(NULL);
}
END_TEST

START_TEST(test_util_kernels)
{
    qe_cl *cl = qe_test_cl();
    cl_program p = NULL;
    cl_kernel axpy = NULL, rows = NULL;
    OK(qe_cl_build1(cl, "util", NULL, &p));
    size_t n = 1000 + rng() % 3000;
    check_fill(cl, p, n);

    /* axpy: y = a*x + y against the same fma in C. */
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *got = malloc(n * sizeof *got);
    ck_assert(x && y && got);
    for (size_t i = 0; i < n; i++) {
        x[i] = rnd_float();
        y[i] = rnd_float();
    }
    float a = rnd_float() / 100.0f;
    cl_uint nn = (cl_uint)n;
    cl_mem dx = NULL, dy = NULL;
    OK(qe_cl_alloc(cl, n * sizeof(float), QE_CL_RO, x, &dx));
    OK(qe_cl_alloc(cl, n * sizeof(float), QE_CL_RW, NULL, &dy));
    OK(qe_cl_write(cl, dy, 0, n * sizeof(float), y, 1));
    OK(qe_cl_kernel(p, "axpy_f32", &axpy));
    OK(QE_CL_ARG(axpy, 0, dy));
    OK(QE_CL_ARG(axpy, 1, dx));
    OK(QE_CL_ARG(axpy, 2, a));
    OK(QE_CL_ARG(axpy, 3, nn));
    size_t g = round_up(n, 32);
    OK(qe_cl_run(cl, axpy, 1, &g, NULL, NULL));
    OK(qe_cl_read(cl, dy, 0, n * sizeof(float), got));
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == fmaf(a, x[i], y[i]), "axpy[%zu] %g != %g (seed %llu)", i, got[i],
                      fmaf(a, x[i], y[i]), (unsigned long long)rng_state);

    /* add_rows: a 2D range with a 2D local size. */
    size_t cols = 17 + rng() % 50, nrows = 3 + rng() % 20;
    float *m = malloc(cols * nrows * sizeof *m), *bias = malloc(cols * sizeof *bias);
    float *mg = malloc(cols * nrows * sizeof *mg);
    ck_assert(m && bias && mg);
    for (size_t i = 0; i < cols * nrows; i++)
        m[i] = rnd_float();
    for (size_t c = 0; c < cols; c++)
        bias[c] = rnd_float();
    cl_mem dm = NULL, db = NULL;
    OK(qe_cl_alloc(cl, cols * nrows * sizeof(float), QE_CL_RW, m, &dm));
    OK(qe_cl_alloc(cl, cols * sizeof(float), QE_CL_RO, bias, &db));
    cl_uint cc = (cl_uint)cols, rr = (cl_uint)nrows;
    OK(qe_cl_kernel(p, "add_rows_f32", &rows));
    OK(qe_cl_args(rows, 4, sizeof dm, &dm, sizeof db, &db, sizeof cc, &cc, sizeof rr, &rr));
    size_t g2[2] = {round_up(cols, 8), round_up(nrows, 4)}, l2[2] = {8, 4};
    OK(qe_cl_run(cl, rows, 2, g2, l2, NULL));
    OK(qe_cl_read(cl, dm, 0, cols * nrows * sizeof(float), mg));
    for (size_t r = 0; r < nrows; r++)
        for (size_t c = 0; c < cols; c++)
            ck_assert_msg(mg[r * cols + c] == m[r * cols + c] + bias[c], "add_rows[%zu][%zu]", r,
                          c);

    qe_cl_free(dm);
    qe_cl_free(db);
    qe_cl_free(dx);
    qe_cl_free(dy);
    qe_cl_kernel_free(rows);
    qe_cl_kernel_free(axpy);
    qe_cl_program_free(p);
    free(m);
    free(bias);
    free(mg);
    free(x);
    free(y);
    free(got);
}
END_TEST

/* Where xh.cl's order xo (0 .. 2) puts pair i of a row, from xh.cl's tables
 * read forward (which pair each slot holds): XH_NAT none, XH_K4 pairs 0, 2,
 * 4, 6, 1, 3, 5, 7 in each 8, XH_K8 slot 8s + 4e + t holds pair 4t + 2s + e
 * in each 16. */
static int xh_slot(int xo, int i)
{
    int slot_of[3][16];
    for (int q = 0; q < 16; q++)
        slot_of[0][q] = q;
    static const int k4_pair[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (int sl = 0; sl < 16; sl++)
        slot_of[1][sl / 8 * 8 + k4_pair[sl % 8]] = sl;
    for (int sl = 0; sl < 16; sl++) {
        const int s = sl / 8, e = sl / 4 % 2, t = sl % 4;
        slot_of[2][4 * t + 2 * s + e] = sl;
    }
    return i - i % 16 + slot_of[xo][i % 16];
}

/* xh (rows of ldp f16 pairs in order xo) holds want (rows of n floats)
 * rounded to nearest even, and zeros past n; what: the producer's name */
static void check_xh_rows(const uint16_t *xh, const float *want, int rows, int n, int ldp, int xo,
                          const char *what)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < 2 * ldp; i++) {
            const int at = r * 2 * ldp + 2 * xh_slot(xo, i / 2) + i % 2;
            const uint16_t v = i < n ? qe_f32_to_f16(want[r * n + i]) : 0;
            ck_assert_msg(xh[at] == v, "order %d row %d element %d: %#x, %s's %#x", xo, r, i,
                          xh[at], what, v);
        }
}

/* ffn.cl's silu_mul_xh (prefill under mma) writes what silu_mul computes,
 * rounded to f16 to nearest even (the host's qe_f32_to_f16), as pairs of
 * rows padded to ldp pairs with zeros: the same bits mma_xh would make of
 * silu_mul's output, in each of xh.cl's orders. An odd n_ff puts a half
 * pair and padding at each row's end. */
START_TEST(test_silu_xh)
{
    qe_cl *cl = qe_test_cl();
    cl_program p = NULL;
    cl_kernel k = NULL, kx = NULL;
    static const char *const srcs[] = {"xh.cl", "act.cl", "ffn.cl"};
    OK(qe_cl_build(cl, srcs, 3, NULL, &p));
    const int n_ff = 37, n_rows = 5, ldp = 32; /* (n_ff + 1) / 2 rounded up to 16 */
    const size_t n = (size_t)n_ff * n_rows;
    float g[37 * 5], u[37 * 5], want[37 * 5];
    uint16_t xh[2 * 32 * 5];
    for (size_t i = 0; i < n; i++) {
        g[i] = rnd_float() / 100.0f; /* silu's interesting range, and large ones */
        u[i] = rnd_float() / 10.0f;
    }
    g[3] = 12.0f * 1000.0f; /* exp(-z) underflows: z * u, past f16's range */
    u[3] = 50.0f;
    cl_mem dg = NULL, du = NULL, dx = NULL;
    OK(qe_cl_alloc(cl, sizeof g, QE_CL_RW, g, &dg));
    OK(qe_cl_alloc(cl, sizeof u, QE_CL_RO, u, &du));
    OK(qe_cl_alloc(cl, sizeof xh, QE_CL_RW, NULL, &dx));
    OK(qe_cl_kernel(p, "silu_mul", &k));
    OK(qe_cl_kernel(p, "silu_mul_xh", &kx));
    /* silu_mul's own output first (it overwrites g; silu_mul_xh reads g) */
    OK(qe_cl_args(k, 3, sizeof dg, &dg, sizeof du, &du, sizeof n_ff, &n_ff));
    size_t gs[2] = {(size_t)n_ff, (size_t)n_rows};
    OK(qe_cl_run(cl, k, 2, gs, NULL, NULL));
    OK(qe_cl_read(cl, dg, 0, sizeof want, want));
    OK(qe_cl_write(cl, dg, 0, sizeof g, g, 1));
    for (int xo = 0; xo < 3; xo++) {
        unsigned char poison = 0xA5;
        OK(qe_cl_fill(cl, dx, &poison, 1, 0, sizeof xh));
        OK(qe_cl_args(kx, 6, sizeof dg, &dg, sizeof du, &du, sizeof n_ff, &n_ff, sizeof dx, &dx,
                      sizeof ldp, &ldp, sizeof xo, &xo));
        size_t gx[2] = {(size_t)ldp, (size_t)n_rows};
        OK(qe_cl_run(cl, kx, 2, gx, NULL, NULL));
        OK(qe_cl_read(cl, dx, 0, sizeof xh, xh));
        check_xh_rows(xh, want, n_rows, n_ff, ldp, xo, "silu_mul");
        /* element 3 (pair 1) is +inf: at slot 1 (NAT), 4 (K4 and K8) */
        ck_assert_uint_eq(xh[2 * (xo == 0 ? 1 : 4) + 1], 0x7C00);
    }
    qe_cl_free(dg);
    qe_cl_free(du);
    qe_cl_free(dx);
    qe_cl_kernel_free(k);
    qe_cl_kernel_free(kx);
    qe_cl_program_free(p);
}
END_TEST

/* norm.cl's rmsnorm_xh (prefill under mma) writes rmsnorm's rows rounded
 * to f16 to nearest even, as pairs padded to ldp with zeros in each of
 * xh.cl's orders: the same bits mma_xh would make of rmsnorm's output. A
 * dim that is odd and not a multiple of the work-group leaves a half pair
 * and padding, and work-items with fewer elements than others. Then
 * rmsnorm_xh_add (the deferred residual, engine.c out_add). */
START_TEST(test_rmsnorm_xh)
{
    qe_cl *cl = qe_test_cl();
    cl_program p = NULL;
    cl_kernel k = NULL, kx = NULL;
    static const char *const srcs[] = {"xh.cl", "rms.cl", "norm.cl"};
    OK(qe_cl_build(cl, srcs, 3, "-DQE_NW=16", &p));
    enum { DIM = 75, ROWS = 3, LDP = 48 }; /* (75 + 1) / 2 rounded up to 16 */
    int dim = DIM, rows = ROWS, ldp = LDP, zero = 0;
    float x[DIM * ROWS], w[DIM], want[DIM * ROWS], eps = 1e-5f;
    uint16_t xh[2 * LDP * ROWS];
    for (int i = 0; i < DIM * ROWS; i++)
        x[i] = rnd_float();
    for (int i = 0; i < DIM; i++)
        w[i] = 1.0f + rnd_float() / 4.0f;
    x[5] = 3.0e5f; /* row 0: one element sets the scale, the rest become f16 subnormals */
    cl_mem dx = NULL, dw = NULL, dy = NULL, dh = NULL;
    OK(qe_cl_alloc(cl, sizeof x, QE_CL_RO, x, &dx));
    OK(qe_cl_alloc(cl, sizeof w, QE_CL_RO, w, &dw));
    OK(qe_cl_alloc(cl, sizeof want, QE_CL_RW, NULL, &dy));
    OK(qe_cl_alloc(cl, sizeof xh, QE_CL_RW, NULL, &dh));
    OK(qe_cl_kernel(p, "rmsnorm", &k));
    OK(qe_cl_args(k, 8, sizeof dx, &dx, sizeof rows, &rows, sizeof rows, &rows, sizeof zero, &zero,
                  sizeof dw, &dw, sizeof dim, &dim, sizeof eps, &eps, sizeof dy, &dy));
    size_t global = 16 * ROWS, local = 16;
    OK(qe_cl_run(cl, k, 1, &global, &local, NULL));
    OK(qe_cl_read(cl, dy, 0, sizeof want, want));
    for (int r = 0; r < ROWS; r++) { /* rmsnorm itself, against the host in double */
        double ss = 0.0;
        for (int i = 0; i < DIM; i++)
            ss += (double)x[r * DIM + i] * x[r * DIM + i];
        const double sc = 1.0 / sqrt(ss / DIM + eps);
        for (int i = 0; i < DIM; i++) {
            const double ref = x[r * DIM + i] * sc * w[i];
            ck_assert_msg(fabs(want[r * DIM + i] - ref) <= 1e-5 * fabs(ref) + 1e-12,
                          "rmsnorm row %d element %d: %g, double %g", r, i, want[r * DIM + i], ref);
        }
    }
    OK(qe_cl_kernel(p, "rmsnorm_xh", &kx));
    for (int xo = 0; xo < 3; xo++) {
        unsigned char poison = 0xA5;
        OK(qe_cl_fill(cl, dh, &poison, 1, 0, sizeof xh));
        OK(qe_cl_args(kx, 7, sizeof dx, &dx, sizeof dw, &dw, sizeof dim, &dim, sizeof eps, &eps,
                      sizeof dh, &dh, sizeof ldp, &ldp, sizeof xo, &xo));
        OK(qe_cl_run(cl, kx, 1, &global, &local, NULL));
        OK(qe_cl_read(cl, dh, 0, sizeof xh, xh));
        check_xh_rows(xh, want, ROWS, DIM, LDP, xo, "rmsnorm");
    }
    /* rmsnorm_xh_add: x becomes x + res (each element the host's float
       sum, bit for bit), and xh rmsnorm_xh's pairs of that sum */
    float res[DIM * ROWS], sum[DIM * ROWS], got[DIM * ROWS], want2[DIM * ROWS];
    for (int i = 0; i < DIM * ROWS; i++) {
        res[i] = rnd_float() * 2.0f;
        sum[i] = x[i] + res[i];
    }
    cl_mem dxa = NULL, dres = NULL, dsum = NULL;
    cl_kernel ka = NULL;
    OK(qe_cl_alloc(cl, sizeof x, QE_CL_RW, NULL, &dxa));
    OK(qe_cl_alloc(cl, sizeof res, QE_CL_RO, res, &dres));
    OK(qe_cl_alloc(cl, sizeof sum, QE_CL_RO, sum, &dsum));
    OK(qe_cl_args(k, 8, sizeof dsum, &dsum, sizeof rows, &rows, sizeof rows, &rows, sizeof zero,
                  &zero, sizeof dw, &dw, sizeof dim, &dim, sizeof eps, &eps, sizeof dy, &dy));
    OK(qe_cl_run(cl, k, 1, &global, &local, NULL));
    OK(qe_cl_read(cl, dy, 0, sizeof want2, want2));
    OK(qe_cl_kernel(p, "rmsnorm_xh_add", &ka));
    for (int xo = 0; xo < 3; xo++) {
        unsigned char poison = 0xA5;
        OK(qe_cl_fill(cl, dh, &poison, 1, 0, sizeof xh));
        OK(qe_cl_write(cl, dxa, 0, sizeof x, x, 1));
        OK(qe_cl_args(ka, 8, sizeof dxa, &dxa, sizeof dres, &dres, sizeof dw, &dw, sizeof dim,
                      &dim, sizeof eps, &eps, sizeof dh, &dh, sizeof ldp, &ldp, sizeof xo, &xo));
        OK(qe_cl_run(cl, ka, 1, &global, &local, NULL));
        OK(qe_cl_read(cl, dxa, 0, sizeof got, got));
        ck_assert_msg(memcmp(got, sum, sizeof sum) == 0, "rmsnorm_xh_add: x is not x + res");
        OK(qe_cl_read(cl, dh, 0, sizeof xh, xh));
        check_xh_rows(xh, want2, ROWS, DIM, LDP, xo, "rmsnorm of x + res");
    }
    qe_cl_free(dxa);
    qe_cl_free(dres);
    qe_cl_free(dsum);
    qe_cl_kernel_free(ka);
    qe_cl_free(dx);
    qe_cl_free(dw);
    qe_cl_free(dy);
    qe_cl_free(dh);
    qe_cl_kernel_free(k);
    qe_cl_kernel_free(kx);
    qe_cl_program_free(p);
}
END_TEST

/* rms.cl's rms_scale in a work-group wider than its reduction width
 * (mma.cl's one-row decode build runs it with 256 work-items whatever
 * QE_NW is): the same bits as in a work-group of QE_NW, as rmsnorm runs it,
 * and within float rounding of the scale in double. A test kernel read
 * through QEVAL_KERNEL_DIR calls the embedded rms.cl both ways. */
START_TEST(test_rms_wide)
{
    static const char src[] =
        "__kernel void rms_scale_at(const __global float *x, int dim, float eps,\n"
        "                           __global float *out)\n"
        "{\n"
        "    __local float red[256];\n"
        "    const int r = get_group_id(0), t = get_local_id(0);\n"
        "    const float s = rms_scale(red, x + r * dim, dim, eps, t);\n"
        "    if (t == 0)\n"
        "        out[r] = s;\n"
        "}\n";
    qe_cl *cl = qe_test_cl();
    char *path = qe_test_write(tmp, "rms_probe.cl", src, sizeof src - 1);
    ck_assert_ptr_nonnull(path);
    setenv("QEVAL_KERNEL_DIR", tmp, 1); /* rms.cl itself stays the embedded one */
    static const char *const srcs[] = {"rms.cl", "rms_probe.cl"};
    cl_program p = NULL;
    cl_kernel k = NULL;
    OK(qe_cl_build(cl, srcs, 2, "-DQE_NW=16", &p));
    OK(qe_cl_kernel(p, "rms_scale_at", &k));
    enum { DIM = 75, ROWS = 3 }; /* not a multiple of 16: work-items with fewer elements */
    int dim = DIM;
    float x[DIM * ROWS], narrow[ROWS], wide[ROWS], eps = 1e-5f;
    for (int i = 0; i < DIM * ROWS; i++)
        x[i] = rnd_float();
    cl_mem dx = NULL, dout = NULL;
    OK(qe_cl_alloc(cl, sizeof x, QE_CL_RO, x, &dx));
    OK(qe_cl_alloc(cl, sizeof narrow, QE_CL_RW, NULL, &dout));
    OK(qe_cl_args(k, 4, sizeof dx, &dx, sizeof dim, &dim, sizeof eps, &eps, sizeof dout, &dout));
    for (size_t w = 16; w <= 256; w *= 16) {
        size_t g = ROWS * w;
        OK(qe_cl_run(cl, k, 1, &g, &w, NULL));
        OK(qe_cl_read(cl, dout, 0, sizeof narrow, w == 16 ? narrow : wide));
    }
    for (int r = 0; r < ROWS; r++) {
        double ss = 0;
        for (int i = 0; i < DIM; i++)
            ss += (double)x[r * DIM + i] * x[r * DIM + i];
        const double want = 1.0 / sqrt(ss / DIM + eps);
        ck_assert_msg(memcmp(&narrow[r], &wide[r], sizeof(float)) == 0,
                      "row %d: %.9g in 16 work-items, %.9g in 256", r, (double)narrow[r],
                      (double)wide[r]);
        ck_assert_msg(fabs(narrow[r] - want) <= 1e-5 * want, "row %d: %.9g, in double %.9g", r,
                      (double)narrow[r], want);
    }
    qe_cl_free(dx);
    qe_cl_free(dout);
    qe_cl_kernel_free(k);
    qe_cl_program_free(p);
    free(path);
}
END_TEST

START_TEST(test_buffers)
{
    qe_cl *cl = qe_test_cl();
    size_t n = 4096 + (rng() % 1024) * 4;
    unsigned char *src = malloc(n), *back = malloc(n);
    ck_assert(src && back);
    for (size_t i = 0; i < n; i++)
        src[i] = (unsigned char)rng();
    cl_mem a = NULL, b = NULL, sub = NULL;
    OK(qe_cl_alloc(cl, n, QE_CL_RW, src, &a));
    ck_assert_uint_eq(qe_cl_size(a), n);
    ck_assert_uint_eq(qe_cl_size(NULL), 0);
    OK(qe_cl_alloc(cl, n, QE_CL_RW, NULL, &b));
    OK(qe_cl_copy(cl, a, 0, b, 0, n));
    OK(qe_cl_read(cl, b, 0, n, back));
    ck_assert(memcmp(src, back, n) == 0);

    /* Partial copy at offsets, then a fill of a 4-byte pattern in the middle. */
    OK(qe_cl_copy(cl, a, 100, b, 7, 1000));
    OK(qe_cl_read(cl, b, 0, n, back));
    ck_assert(memcmp(back + 7, src + 100, 1000) == 0);
    ck_assert(memcmp(back, src, 7) == 0);
    uint32_t pat = rng();
    OK(qe_cl_fill(cl, b, &pat, 4, 2048, 1024));
    OK(qe_cl_read(cl, b, 2048, 1024, back));
    for (size_t i = 0; i < 1024; i += 4)
        ck_assert(memcmp(back + i, &pat, 4) == 0);

    /* Non-blocking write, then finish. */
    OK(qe_cl_write(cl, b, 0, n, src, 0));
    OK(qe_cl_finish(cl));
    OK(qe_cl_read(cl, b, 0, n, back));
    ck_assert(memcmp(src, back, n) == 0);

    /* A sub-buffer at an aligned offset sees the parent's bytes. */
    size_t align = qe_cl_device(cl)->mem_base_align;
    if (align < n / 2) {
        OK(qe_cl_sub(cl, a, align, 64, &sub));
        ck_assert_uint_eq(qe_cl_size(sub), 64);
        OK(qe_cl_read(cl, sub, 0, 64, back));
        ck_assert(memcmp(back, src + align, 64) == 0);
    }
    /* Zero-byte transfers are no-ops. */
    OK(qe_cl_read(cl, a, n, 0, back));
    qe_cl_free(sub);
    qe_cl_free(a);
    qe_cl_free(b);
    qe_cl_free(NULL);
    free(src);
    free(back);
}
END_TEST

/* qe_cl_profile_take sums every launch per kernel name, including launches
 * whose event the caller did not ask for, across the 4096-launch fold. */
/* A profiling qe_cl with util.cl's fill_f32 and axpy_f32 and two buffers
 * x, y of n floats: what test_profile_take and test_side_queue run on. */
typedef struct axpy_rig {
    qe_cl *cl;
    cl_program p;
    cl_kernel fill, axpy;
    cl_mem x, y;
} axpy_rig;

static axpy_rig rig_open(cl_uint n)
{
    axpy_rig r = {0};
    OK(qe_cl_open(NULL, QE_CL_PROFILE, &r.cl));
    OK(qe_cl_build1(r.cl, "util.cl", NULL, &r.p));
    OK(qe_cl_kernel(r.p, "fill_f32", &r.fill));
    OK(qe_cl_kernel(r.p, "axpy_f32", &r.axpy));
    OK(qe_cl_alloc(r.cl, n * sizeof(float), QE_CL_RW, NULL, &r.x));
    OK(qe_cl_alloc(r.cl, n * sizeof(float), QE_CL_RW, NULL, &r.y));
    return r;
}

static void rig_close(axpy_rig *r)
{
    qe_cl_free(r->x);
    qe_cl_free(r->y);
    qe_cl_kernel_free(r->fill);
    qe_cl_kernel_free(r->axpy);
    qe_cl_program_free(r->p);
    qe_cl_close(r->cl);
}

START_TEST(test_profile_take)
{
    qe_cl_kernel_time *t = NULL;
    size_t nt = 99;
    cl_uint n = 256;
    axpy_rig rig = rig_open(n);
    qe_cl *cl = rig.cl;
    cl_kernel fill = rig.fill, axpy = rig.axpy;
    cl_mem x = rig.x, y = rig.y;
    float v = 1, a = 2;
    OK(qe_cl_args(fill, 3, sizeof x, &x, sizeof v, &v, sizeof n, &n));
    OK(qe_cl_args(axpy, 4, sizeof y, &y, sizeof x, &x, sizeof a, &a, sizeof n, &n));
    size_t g = n;
    const int n_fill = 4096 + 904;
    OK(qe_cl_run(cl, axpy, 1, &g, NULL, NULL));
    for (int i = 0; i < n_fill; i++)
        OK(qe_cl_run(cl, fill, 1, &g, NULL, NULL));
    cl_event ev = NULL;
    OK(qe_cl_run(cl, axpy, 1, &g, NULL, &ev)); /* the caller's event stays valid */
    OK(qe_cl_profile_take(cl, &t, &nt));
    ck_assert_uint_eq(nt, 2);
    ck_assert_str_eq(t[0].name, "axpy_f32"); /* order of first launch */
    ck_assert_uint_eq(t[0].calls, 2);
    ck_assert_str_eq(t[1].name, "fill_f32");
    ck_assert_uint_eq(t[1].calls, (uint64_t)n_fill);
    ck_assert_uint_gt(t[1].ns, 0);
    uint64_t s = 0, e = 0;
    OK(qe_cl_event_times(ev, NULL, &s, &e));
    ck_assert_uint_le(e - s, t[0].ns);
    qe_cl_event_free(ev);
    free(t);
    t = NULL;
    OK(qe_cl_profile_take(cl, &t, &nt)); /* a take starts over */
    ck_assert_uint_eq(nt, 0);
    ck_assert_ptr_null(t);

    /* Without QE_CL_PROFILE nothing is recorded. */
    qe_cl *plain = qe_test_cl();
    nt = 99;
    OK(qe_cl_profile_take(plain, &t, &nt));
    ck_assert_uint_eq(nt, 0);
    OK(qe_cl_run(cl, fill, 1, &g, NULL, NULL)); /* left pending: released at close */
    rig_close(&rig);
}
END_TEST

/* QEVAL_PROFILE_TRACE: a line a launch summed, in launch order, each
 * "name TAB queued TAB start TAB end" with queued <= start <= end and each
 * launch starting after the one before it ends (an in-order queue); a path
 * that cannot be written fails the open naming it; without QE_CL_PROFILE
 * the variable is ignored. */
START_TEST(test_profile_trace)
{
    char *dir = qe_test_tmpdir();
    char path[1024], bad[1024];
    snprintf(path, sizeof path, "%s/trace.tsv", dir);
    snprintf(bad, sizeof bad, "%s/no-such-dir/trace.tsv", dir);
    setenv("QEVAL_PROFILE_TRACE", path, 1);
    cl_uint n = 256;
    axpy_rig rig = rig_open(n);
    float v = 1, a = 2;
    OK(qe_cl_args(rig.fill, 3, sizeof rig.x, &rig.x, sizeof v, &v, sizeof n, &n));
    OK(qe_cl_args(rig.axpy, 4, sizeof rig.y, &rig.y, sizeof rig.x, &rig.x, sizeof a, &a,
                  sizeof n, &n));
    size_t g = n;
    OK(qe_cl_run(rig.cl, rig.axpy, 1, &g, NULL, NULL));
    OK(qe_cl_run(rig.cl, rig.fill, 1, &g, NULL, NULL));
    OK(qe_cl_run(rig.cl, rig.fill, 1, &g, NULL, NULL));
    qe_cl_kernel_time *t = NULL;
    size_t nt = 0;
    OK(qe_cl_profile_take(rig.cl, &t, &nt));
    free(t);
    rig_close(&rig);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    const char *const names[] = {"axpy_f32", "fill_f32", "fill_f32"};
    char name[64];
    unsigned long long q, st, en, prev_end = 0;
    int lines = 0;
    while (fscanf(f, "%63s %llu %llu %llu", name, &q, &st, &en) == 4) {
        ck_assert_int_lt(lines, 3);
        ck_assert_str_eq(name, names[lines]);
        ck_assert_msg(q <= st && st <= en, "line %d: queued %llu start %llu end %llu", lines + 1,
                      q, st, en);
        ck_assert_msg(st >= prev_end, "line %d starts at %llu before the last ended (%llu)",
                      lines + 1, st, prev_end);
        prev_end = en;
        lines++;
    }
    ck_assert(feof(f));
    fclose(f);
    ck_assert_int_eq(lines, 3);

    qe_cl *cl = NULL;
    setenv("QEVAL_PROFILE_TRACE", bad, 1);
    ck_assert_int_eq(qe_cl_open(NULL, QE_CL_PROFILE, &cl), QE_EIO);
    ck_assert_ptr_null(cl);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), bad));
    OK(qe_cl_open(NULL, 0, &cl)); /* not profiling: not opened */
    qe_cl_close(cl);
    unsetenv("QEVAL_PROFILE_TRACE");
    qe_test_rmtree(dir);
    free(dir);
}
END_TEST

/* The side queue: work there ordered against the main queue's by events
 * alone. Eight rounds of: the side queue fills x with r (after the main
 * queue's previous axpy has read x: its marker), the main queue adds x to
 * y (after the fill: its event). y ends as 1 + 2 + ... + 8 everywhere only if
 * both waits hold; x is 16 MB so that a dropped wait shows (a fill still
 * running under the axpy, or the next fill overwriting x under it). The
 * side queue's launches are profiled with the main queue's. */
START_TEST(test_side_queue)
{
    cl_uint n = 1u << 22;
    axpy_rig rig = rig_open(n);
    qe_cl *cl = rig.cl;
    cl_kernel fill = rig.fill, axpy = rig.axpy;
    cl_mem x = rig.x, y = rig.y;
    float zero = 0, one = 1;
    OK(qe_cl_args(fill, 3, sizeof y, &y, sizeof zero, &zero, sizeof n, &n));
    size_t g = n;
    OK(qe_cl_run(cl, fill, 1, &g, NULL, NULL));
    cl_event read = NULL; /* the main queue's last axpy done */
    OK(qe_cl_barrier(cl, QE_CL_MAIN, 0, NULL, &read));
    for (int r = 1; r <= 8; r++) {
        float v = (float)r;
        cl_event filled = NULL;
        OK(qe_cl_args(fill, 3, sizeof x, &x, sizeof v, &v, sizeof n, &n));
        OK(qe_cl_run_on(cl, QE_CL_SIDE, fill, 1, &g, NULL, 1, &read, &filled));
        ck_assert_ptr_nonnull(filled);
        qe_cl_event_free(read);
        OK(qe_cl_barrier(cl, QE_CL_MAIN, 1, &filled, NULL));
        OK(qe_cl_args(axpy, 4, sizeof y, &y, sizeof x, &x, sizeof one, &one, sizeof n, &n));
        OK(qe_cl_run(cl, axpy, 1, &g, NULL, NULL));
        OK(qe_cl_barrier(cl, QE_CL_MAIN, 0, NULL, &read));
        OK(qe_cl_event_retain(filled)); /* two references, each freed */
        qe_cl_event_free(filled);
        qe_cl_event_free(filled);
    }
    qe_cl_event_free(read);
    OK(qe_cl_finish(cl));
    float *h = malloc(n * sizeof *h);
    ck_assert_ptr_nonnull(h);
    OK(qe_cl_read(cl, y, 0, n * sizeof *h, h));
    cl_uint bad = 0;
    for (cl_uint i = 0; i < n; i++)
        bad += h[i] != 36.0f;
    ck_assert_msg(bad == 0, "%u of %u sums are not 36 (y[0] = %g)", bad, n, (double)h[0]);
    free(h);
    qe_cl_kernel_time *t = NULL;
    size_t nt = 0;
    OK(qe_cl_profile_take(cl, &t, &nt));
    ck_assert_uint_eq(nt, 2);
    ck_assert_str_eq(t[0].name, "fill_f32");
    ck_assert_uint_eq(t[0].calls, 9); /* y's on the main queue and x's 8 on the side */
    free(t);
    rig_close(&rig);
}
END_TEST

START_TEST(test_profiling)
{
    qe_cl *cl = NULL;
    cl_program p = NULL;
    cl_kernel k = NULL;
    cl_mem x = NULL;
    cl_event ev = NULL;
    OK(qe_cl_open(NULL, QE_CL_PROFILE, &cl));
    ck_assert_int_eq(qe_cl_profiling(cl), 1);
    OK(qe_cl_build1(cl, "util.cl", NULL, &p));
    OK(qe_cl_kernel(p, "fill_f32", &k));
    cl_uint n = 1 << 16;
    float v = 1;
    OK(qe_cl_alloc(cl, n * sizeof(float), QE_CL_WO, NULL, &x));
    OK(qe_cl_args(k, 3, sizeof x, &x, sizeof v, &v, sizeof n, &n));
    size_t g = n;
    OK(qe_cl_run(cl, k, 1, &g, NULL, &ev));
    ck_assert_ptr_nonnull(ev);
    uint64_t q = 0, s = 0, e = 0;
    OK(qe_cl_event_times(ev, &q, &s, &e));
    ck_assert_uint_gt(s, 0);
    ck_assert_uint_le(q, s);
    ck_assert_uint_le(s, e);
    OK(qe_cl_event_times(ev, NULL, NULL, &e));
    qe_cl_event_free(ev);
    qe_cl_event_free(NULL);

    /* Without QE_CL_PROFILE the driver refuses timings. */
    qe_cl *plain = qe_test_cl();
    cl_program p2 = NULL;
    cl_kernel k2 = NULL;
    cl_mem x2 = NULL;
    ev = NULL;
    OK(qe_cl_build1(plain, "util", NULL, &p2));
    OK(qe_cl_kernel(p2, "fill_f32", &k2));
    OK(qe_cl_alloc(plain, n * sizeof(float), QE_CL_RW, NULL, &x2));
    OK(qe_cl_args(k2, 3, sizeof x2, &x2, sizeof v, &v, sizeof n, &n));
    OK(qe_cl_run(plain, k2, 1, &g, NULL, &ev));
    OK(qe_cl_event_wait(ev));
    ck_assert_int_eq(qe_cl_event_times(ev, &q, &s, &e), QE_ECL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "CL_PROFILING_INFO_NOT_AVAILABLE"));
    qe_cl_event_free(ev);
    qe_cl_free(x2);
    qe_cl_kernel_free(k2);
    qe_cl_program_free(p2);

    qe_cl_free(x);
    qe_cl_kernel_free(k);
    qe_cl_program_free(p);
    qe_cl_close(cl);
}
END_TEST

START_TEST(test_probe)
{
    qe_cl *cl = qe_test_cl();
    const qe_cl_device_info *d = qe_cl_device(cl);
    qe_cl_caps c1, c2;
    memset(&c1, 0x5a, sizeof c1);
    OK(qe_cl_probe(cl, &c1));
    OK(qe_cl_probe(cl, &c2));
    ck_assert(memcmp(&c1, &c2, sizeof c1) == 0);
    /* vload_half/vstore_half are core OpenCL 1.x: every device has them. */
    ck_assert_int_eq(c1.half_storage, 1);
    ck_assert(c1.fp16 == 0 || c1.fp16 == 1);
    if (!qe_cl_has_extension(d, "cl_khr_fp16"))
        ck_assert_int_eq(c1.fp16, 0);
    if (!c1.subgroups)
        ck_assert_int_eq(c1.subgroup_size, 0);
    else
        ck_assert_int_ge(c1.subgroup_size, 1);
    if (d->vendor_id != 0x10de) {
        ck_assert_int_eq(c1.ptx_shfl, 0);
        ck_assert_int_eq(c1.ptx_mma, 0);
    }
    ck_assert(!c1.ptx_mma || c1.ptx_shfl);
    ck_assert(!c1.wgmma || c1.ptx_mma);
    if (d->vendor_id != 0x10de) /* PoCL: no PTX to patch for wgmma */
        ck_assert_int_eq(c1.wgmma, 0);
    /* A second handle on the same device gets the per-process result. */
    qe_cl *other = NULL;
    char idx[16];
    snprintf(idx, sizeof idx, "%d", d->index);
    OK(qe_cl_open(idx, 0, &other));
    OK(qe_cl_probe(other, &c2));
    ck_assert(memcmp(&c1, &c2, sizeof c1) == 0);
    qe_cl_close(other);
}
END_TEST

/* qe_cl_wgmma_patch: kernels/wgmma.cl's comments as the instructions, the
 * target as sm_90a, every other line as it was (pure text). */
START_TEST(test_wgmma_patch)
{
    static const char ptx[] = "//\n"
                              "// Generated by NVIDIA NVVM Compiler\n"
                              ".version 9.0\n"
                              ".target sm_90, texmode_independent\n"
                              ".address_size 64\n"
                              "\t// begin inline asm\n"
                              "\t// @WGPROXY\n"
                              "\t// end inline asm\n"
                              "\t// @WGFENCE\n"
                              "\t// @WGMMA128SS {%f1, %f2}, %rd7, %rd8   \n"
                              "\t// @WGMMA128RS {%f1, %f2}, {%r1, %r2, %r3, %r4}, %rd9\n"
                              "\t// @WGCOMMIT\n"
                              "\t// @WGWAIT0\n"
                              "\t// @WGWAIT1\n"
                              "\tret;";
    static const char want[] =
        "//\n"
        "// Generated by NVIDIA NVVM Compiler\n"
        ".version 9.0\n"
        ".target sm_90a, texmode_independent\n"
        ".address_size 64\n"
        "\t// begin inline asm\n"
        "\tfence.proxy.async.shared::cta;\n"
        "\t// end inline asm\n"
        "\twgmma.fence.sync.aligned;\n"
        "\t{ .reg .pred wgp; .reg .b32 wgs; mov.b32 wgs, 1; setp.ne.b32 wgp, wgs, 0; "
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%f1, %f2}, %rd7, %rd8, wgp, 1, 1, "
        "0, 0; }\n"
        "\t{ .reg .pred wgp; .reg .b32 wgs; mov.b32 wgs, 1; setp.ne.b32 wgp, wgs, 0; "
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%f1, %f2}, {%r1, %r2, %r3, %r4}, "
        "%rd9, wgp, 1, 1, 0; }\n"
        "\twgmma.commit_group.sync.aligned;\n"
        "\twgmma.wait_group.sync.aligned 0;\n"
        "\twgmma.wait_group.sync.aligned 1;\n"
        "\tret;";
    char *out = NULL;
    size_t n = 0;
    OK(qe_cl_wgmma_patch(ptx, sizeof ptx - 1, &out, &n));
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(n, strlen(want));
    free(out);
    /* a program without markers only changes its target; sm_90a stays */
    static const char plain[] = ".version 8.0\n.target sm_90\n\tret;\n";
    OK(qe_cl_wgmma_patch(plain, sizeof plain - 1, &out, &n));
    ck_assert_str_eq(out, ".version 8.0\n.target sm_90a\n\tret;\n");
    free(out);
    static const char already[] = ".version 8.3\n.target sm_90a, texmode_independent";
    OK(qe_cl_wgmma_patch(already, sizeof already - 1, &out, &n));
    ck_assert_str_eq(out, ".version 8.3\n.target sm_90a, texmode_independent\n");
    free(out);
}
END_TEST

/* (limits) what the patch refuses, with the byte offset of a bad marker;
 * and on a device whose binaries are not sm_90 PTX (PoCL) a wgmma build is
 * QE_EUNSUPPORTED, not a crash or a silent plain build. */
START_TEST(test_wgmma_patch_limits)
{
    static const struct {
        const char *ptx;
        qe_status st;
        const char *words;
    } bad[] = {
        {"", QE_EUNSUPPORTED, "sm_90"},
        {".version 9.0\n\tret;\n", QE_EUNSUPPORTED, "sm_90"},
        {".version 9.0\n.target sm_80\n", QE_EUNSUPPORTED, "sm_90"},
        {".version 9.0\n.target sm_900\n", QE_EUNSUPPORTED, "sm_90"},
        {".version 9.0\n.target sm_90ab\n", QE_EUNSUPPORTED, "sm_90"},
        {".version 7.8\n.target sm_90\n", QE_EUNSUPPORTED, "ISA 8.0"},
        {".version 9.0\n.target sm_90\n\t// @WGWAIT9\n", QE_ECORRUPT, "byte 27"},
        {".version 9.0\n.target sm_90\n\t// @WGWAIT\n", QE_ECORRUPT, "@WGWAIT"},
        {".version 9.0\n.target sm_90\n\t// @WGWAIT 12\n", QE_ECORRUPT, "@WGWAIT"},
        {".version 9.0\n.target sm_90\n\t// @WGFENCE now\n", QE_ECORRUPT, "@WGFENCE"},
        {".version 9.0\n.target sm_90\n\t// @WGMMA128SS %f1, %rd1\n", QE_ECORRUPT, "@WGMMA128SS"},
        {".version 9.0\n.target sm_90\n\t// @WGMMA128SS {%f1}; trap;\n", QE_ECORRUPT,
         "@WGMMA128SS"},
        {".version 9.0\n.target sm_90\n\t// @WGMMA128SS\n", QE_ECORRUPT, "@WGMMA128SS"},
        {".version 9.0\n.target sm_90\n\t// @WGMMA128RS {%f1}, {%r1}; ret\n", QE_ECORRUPT,
         "@WGMMA128RS"},
        {".version 9.0\n.target sm_90\n\t// @WGMMA128RS %f1\n", QE_ECORRUPT, "@WGMMA128RS"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = (char *)&out;
        size_t n = 7;
        ck_assert_int_eq(qe_cl_wgmma_patch(bad[i].ptx, strlen(bad[i].ptx), &out, &n), bad[i].st);
        ck_assert_msg(strstr(qe_errmsg(), bad[i].words), "case %zu: %s", i, qe_errmsg());
        ck_assert_ptr_null(out);
        ck_assert_uint_eq(n, 0);
        qe_errclear();
    }
    qe_cl_caps caps;
    OK(qe_cl_probe(qe_test_cl(), &caps));
    if (!caps.wgmma) { /* a program that builds, whose binary is no sm_90 PTX */
        const int nv = qe_cl_device(qe_test_cl())->vendor_id == 0x10de;
        static const char *const nv_srcs[] = {"ptx.cl", "wgmma.cl"}, *const any[] = {"util.cl"};
        cl_program p = (cl_program)&p;
        qe_status st = nv ? qe_cl_build_wgmma(qe_test_cl(), nv_srcs, 2, NULL, &p)
                          : qe_cl_build_wgmma(qe_test_cl(), any, 1, NULL, &p);
        ck_assert_msg(st == QE_EUNSUPPORTED, "%s", qe_errmsg());
        ck_assert_ptr_null(p);
        qe_errclear();
    }
}
END_TEST

START_TEST(test_multi_source)
{
    /* Two sources in one program, options reaching the first. */
    qe_cl *cl = qe_test_cl();
    const char *names[2] = {"probe.cl", "util"};
    cl_program p = NULL;
    cl_kernel k = NULL;
    OK(qe_cl_build(cl, names, 2, "-DQE_PROBE_HALF_STORAGE", &p));
    OK(qe_cl_kernel(p, "probe_half_storage", &k));
    check_fill(cl, p, 333);

    /* Run the half-storage kernel and compare with lib/dtype's conversions. */
    enum { N = 256 };
    float in[N], out[N];
    uint16_t h[N];
    for (int i = 0; i < N; i++)
        in[i] = rnd_float() / (float)(1 + rng() % 1000);
    cl_mem din = NULL, dh = NULL, dout = NULL;
    OK(qe_cl_alloc(cl, sizeof in, QE_CL_RO, in, &din));
    OK(qe_cl_alloc(cl, sizeof h, QE_CL_RW, NULL, &dh));
    OK(qe_cl_alloc(cl, sizeof out, QE_CL_RW, NULL, &dout));
    OK(qe_cl_args(k, 3, sizeof din, &din, sizeof dh, &dh, sizeof dout, &dout));
    size_t g = N;
    OK(qe_cl_run(cl, k, 1, &g, NULL, NULL));
    OK(qe_cl_read(cl, dh, 0, sizeof h, h));
    OK(qe_cl_read(cl, dout, 0, sizeof out, out));
    for (int i = 0; i < N; i++) {
        ck_assert_msg(h[i] == qe_f32_to_f16(in[i]), "half(%a) = %04x, want %04x", in[i], h[i],
                      qe_f32_to_f16(in[i]));
        ck_assert(out[i] == qe_f16_to_f32(h[i]));
    }
    qe_cl_free(din);
    qe_cl_free(dh);
    qe_cl_free(dout);
    qe_cl_kernel_free(k);
    qe_cl_program_free(p);
}
END_TEST

/* ---- cache ---- */

START_TEST(test_cache_hit)
{
    qe_cl *cl = qe_test_cl();
    setenv("QEVAL_CACHE_DIR", tmp, 1);
    qe_cl_cache_stats s;
    qe_cl_cache_stats_reset();
    cl_program p = NULL;
    OK(qe_cl_build1(cl, "util", "-DQE_TEST_CACHE=1", &p));
    qe_cl_cache_stats_get(&s);
    ck_assert_uint_eq(s.hits, 0);
    ck_assert_uint_eq(s.misses, 1);
    ck_assert_uint_eq(s.stores, 1);
    ck_assert_int_eq(count_bins(tmp), 1);
    qe_cl_program_free(p);

    /* Second build: from the cached binary, and it runs. */
    OK(qe_cl_build1(cl, "util", "-DQE_TEST_CACHE=1", &p));
    qe_cl_cache_stats_get(&s);
    ck_assert_uint_eq(s.hits, 1);
    ck_assert_uint_eq(s.misses, 1);
    ck_assert_uint_eq(s.rejects, 0);
    check_fill(cl, p, 1234);
    qe_cl_program_free(p);

    /* Other options are another key: a new file. */
    OK(qe_cl_build1(cl, "util", "-DQE_TEST_CACHE=2", &p));
    ck_assert_int_eq(count_bins(tmp), 2);
    qe_cl_program_free(p);

    char *dir = qe_cl_cache_dir();
    ck_assert_str_eq(dir, tmp);
    free(dir);
}
END_TEST

/* Damage the one cache file in `tmp` in one of several ways. */
static void damage(const char *path, int how)
{
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    unsigned char byte;
    switch (how) {
    case 0: /* flip a byte of the binary: checksum mismatch */
        fseek(f, 40 + (long)(sb.st_size - 40) / 2, SEEK_SET);
        ck_assert_int_eq(fread(&byte, 1, 1, f), 1);
        byte ^= 0x40;
        fseek(f, -1, SEEK_CUR);
        fwrite(&byte, 1, 1, f);
        break;
    case 1: /* truncated in the middle of the binary */
        ck_assert_int_eq(ftruncate(fileno(f), sb.st_size / 2), 0);
        break;
    case 2: /* truncated in the header */
        ck_assert_int_eq(ftruncate(fileno(f), 10), 0);
        break;
    case 3: /* wrong magic */
        fwrite("XXXX", 1, 4, f);
        break;
    case 4: /* huge size field */
        fseek(f, 24, SEEK_SET);
        fwrite("\xff\xff\xff\xff\xff\xff\xff\x7f", 1, 8, f);
        break;
    case 5: /* trailing garbage */
        fseek(f, 0, SEEK_END);
        fwrite("junk", 1, 4, f);
        break;
    default: /* empty file */
        ck_assert_int_eq(ftruncate(fileno(f), 0), 0);
        break;
    }
    fclose(f);
}

START_TEST(test_cache_corrupt)
{
    qe_cl *cl = qe_test_cl();
    setenv("QEVAL_CACHE_DIR", tmp, 1);
    cl_program p = NULL;
    qe_cl_cache_stats s;
    OK(qe_cl_build1(cl, "util", "-DQE_TEST_CORRUPT", &p));
    qe_cl_program_free(p);
    const char *path = only_bin(tmp);
    ck_assert_ptr_nonnull(path);
    char saved[4200];
    snprintf(saved, sizeof saved, "%s", path);
    for (int how = 0; how <= 6; how++) {
        damage(saved, how);
        qe_cl_cache_stats_reset();
        OK(qe_cl_build1(cl, "util", "-DQE_TEST_CORRUPT", &p));
        qe_cl_cache_stats_get(&s);
        ck_assert_msg(s.hits == 0 && s.rejects == 1 && s.misses == 1 && s.stores == 1,
                      "damage %d: hits %llu rejects %llu misses %llu stores %llu", how,
                      (unsigned long long)s.hits, (unsigned long long)s.rejects,
                      (unsigned long long)s.misses, (unsigned long long)s.stores);
        check_fill(cl, p, 100);
        qe_cl_program_free(p);
        /* The rebuilt file is good again. */
        OK(qe_cl_build1(cl, "util", "-DQE_TEST_CORRUPT", &p));
        qe_cl_cache_stats_get(&s);
        ck_assert_uint_eq(s.hits, 1);
        qe_cl_program_free(p);
    }
    ck_assert_int_eq(count_bins(tmp), 1);
}
END_TEST

START_TEST(test_cache_garbage_binary)
{
    /* A well-formed cache file whose binary the driver rejects: rebuilt from
     * source. The file is made by hand with the layout documented in build.c,
     * reusing the real file's header (so magic, version and key are right). */
    qe_cl *cl = qe_test_cl();
    setenv("QEVAL_CACHE_DIR", tmp, 1);
    cl_program p = NULL;
    OK(qe_cl_build1(cl, "util", "-DQE_TEST_GARBAGE", &p));
    qe_cl_program_free(p);
    const char *path = only_bin(tmp);
    ck_assert_ptr_nonnull(path);
    unsigned char file[40 + 64];
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fread(file, 1, 40, f), 40);
    fclose(f);
    uint64_t size = 64, sum = 0xcbf29ce484222325ull;
    for (int i = 0; i < 64; i++) {
        file[40 + i] = (unsigned char)rng();
        sum = (sum ^ file[40 + i]) * 0x100000001b3ull;
    }
    memcpy(file + 24, &size, 8);
    memcpy(file + 32, &sum, 8);
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(file, 1, sizeof file, f), sizeof file);
    fclose(f);
    qe_cl_cache_stats s;
    qe_cl_cache_stats_reset();
    OK(qe_cl_build1(cl, "util", "-DQE_TEST_GARBAGE", &p));
    qe_cl_cache_stats_get(&s);
    ck_assert_uint_eq(s.hits, 0);
    ck_assert_uint_eq(s.rejects, 1);
    check_fill(cl, p, 77);
    qe_cl_program_free(p);
}
END_TEST

START_TEST(test_no_cache)
{
    qe_cl *cl = qe_test_cl();
    setenv("QEVAL_CACHE_DIR", tmp, 1);
    setenv("QEVAL_NO_CACHE", "1", 1);
    ck_assert_ptr_null(qe_cl_cache_dir());
    qe_cl_cache_stats s;
    qe_cl_cache_stats_reset();
    cl_program p = NULL;
    for (int i = 0; i < 2; i++) {
        OK(qe_cl_build1(cl, "util", "-DQE_TEST_NOCACHE", &p));
        qe_cl_program_free(p);
    }
    qe_cl_cache_stats_get(&s);
    ck_assert_uint_eq(s.hits + s.misses + s.stores + s.rejects, 0);
    ck_assert_int_eq(count_bins(tmp), 0);
    /* "0" means enabled. */
    setenv("QEVAL_NO_CACHE", "0", 1);
    char *dir = qe_cl_cache_dir();
    ck_assert_ptr_nonnull(dir);
    free(dir);
}
END_TEST

START_TEST(test_cache_dir)
{
    static const char *const vars[3] = {"QEVAL_CACHE_DIR", "XDG_CACHE_HOME", "HOME"};
    char *saved[3];
    for (int i = 0; i < 3; i++)
        saved[i] = getenv(vars[i]) ? strdup(getenv(vars[i])) : NULL;
    char *d;
    unsetenv("QEVAL_CACHE_DIR");
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    d = qe_cl_cache_dir();
    ck_assert_str_eq(d, "/x/cache/qeval");
    free(d);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/someone", 1);
    d = qe_cl_cache_dir();
    ck_assert_str_eq(d, "/home/someone/.cache/qeval");
    free(d);
    setenv("QEVAL_CACHE_DIR", "/elsewhere", 1);
    d = qe_cl_cache_dir();
    ck_assert_str_eq(d, "/elsewhere");
    free(d);
    unsetenv("QEVAL_CACHE_DIR");
    unsetenv("HOME");
    ck_assert_ptr_null(qe_cl_cache_dir());
    for (int i = 0; i < 3; i++) {
        if (saved[i])
            setenv(vars[i], saved[i], 1);
        free(saved[i]);
    }
}
END_TEST

START_TEST(test_cache_unwritable)
{
    /* The cache dir cannot exist (a file is in the way): builds still work. */
    qe_cl *cl = qe_test_cl();
    char *file = qe_test_write(tmp, "file", "x", 1);
    ck_assert_ptr_nonnull(file);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/sub", file);
    setenv("QEVAL_CACHE_DIR", dir, 1);
    qe_cl_cache_stats s;
    qe_cl_cache_stats_reset();
    cl_program p = NULL;
    OK(qe_cl_build1(cl, "util", "-DQE_TEST_UNWRITABLE", &p));
    qe_cl_cache_stats_get(&s);
    ck_assert_uint_eq(s.stores, 0);
    ck_assert_uint_eq(s.misses, 1);
    check_fill(cl, p, 50);
    qe_cl_program_free(p);
    free(file);
}
END_TEST

START_TEST(test_kernel_dir)
{
    /* QEVAL_KERNEL_DIR replaces the embedded util.cl: this fill writes v + 1. */
    static const char src[] =
        "__kernel void fill_f32(__global float *x, float v, uint n)\n"
        "{ uint i = get_global_id(0); if (i < n) x[i] = v + 1.0f; }\n";
    qe_cl *cl = qe_test_cl();
    char *path = qe_test_write(tmp, "util.cl", src, sizeof src - 1);
    ck_assert_ptr_nonnull(path);
    setenv("QEVAL_KERNEL_DIR", tmp, 1);
    cl_program p = NULL;
    cl_kernel k = NULL;
    cl_mem x = NULL;
    float v = rnd_float(), got[16];
    cl_uint n = 16;
    OK(qe_cl_build1(cl, "util", NULL, &p));
    ck_assert_int_eq(qe_cl_kernel(p, "axpy_f32", &k), QE_ECL); /* not in this copy */
    ck_assert_ptr_null(k);
    OK(qe_cl_kernel(p, "fill_f32", &k));
    OK(qe_cl_alloc(cl, sizeof got, QE_CL_RW, NULL, &x));
    OK(qe_cl_args(k, 3, sizeof x, &x, sizeof v, &v, sizeof n, &n));
    size_t g = 16;
    OK(qe_cl_run(cl, k, 1, &g, NULL, NULL));
    OK(qe_cl_read(cl, x, 0, sizeof got, got));
    for (int i = 0; i < 16; i++)
        ck_assert(got[i] == v + 1.0f);
    qe_cl_kernel_free(k);
    qe_cl_program_free(p);
    /* A name the directory lacks still comes from the embedded table. */
    OK(qe_cl_build1(cl, "probe", "-DQE_PROBE_HALF_STORAGE", &p));
    qe_cl_program_free(p);
    /* Without the variable: the embedded copy again (axpy exists). */
    unsetenv("QEVAL_KERNEL_DIR");
    OK(qe_cl_build1(cl, "util", NULL, &p));
    OK(qe_cl_kernel(p, "axpy_f32", &k));
    qe_cl_kernel_free(k);
    qe_cl_program_free(p);
    qe_cl_free(x);
    free(path);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_errstr)
{
    /* Names checked against the header's own macros. */
#define E(code) {code, #code}
    static const struct {
        cl_int code;
        const char *name;
    } want[] = {
        E(CL_SUCCESS), E(CL_DEVICE_NOT_FOUND), E(CL_DEVICE_NOT_AVAILABLE),
        E(CL_COMPILER_NOT_AVAILABLE), E(CL_MEM_OBJECT_ALLOCATION_FAILURE),
        E(CL_OUT_OF_RESOURCES), E(CL_OUT_OF_HOST_MEMORY), E(CL_PROFILING_INFO_NOT_AVAILABLE),
        E(CL_MEM_COPY_OVERLAP), E(CL_IMAGE_FORMAT_MISMATCH), E(CL_IMAGE_FORMAT_NOT_SUPPORTED),
        E(CL_BUILD_PROGRAM_FAILURE), E(CL_MAP_FAILURE), E(CL_MISALIGNED_SUB_BUFFER_OFFSET),
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST), E(CL_COMPILE_PROGRAM_FAILURE),
        E(CL_LINKER_NOT_AVAILABLE), E(CL_LINK_PROGRAM_FAILURE), E(CL_DEVICE_PARTITION_FAILED),
        E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE), E(CL_INVALID_VALUE), E(CL_INVALID_DEVICE_TYPE),
        E(CL_INVALID_PLATFORM), E(CL_INVALID_DEVICE), E(CL_INVALID_CONTEXT),
        E(CL_INVALID_QUEUE_PROPERTIES), E(CL_INVALID_COMMAND_QUEUE), E(CL_INVALID_HOST_PTR),
        E(CL_INVALID_MEM_OBJECT), E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR),
        E(CL_INVALID_IMAGE_SIZE), E(CL_INVALID_SAMPLER), E(CL_INVALID_BINARY),
        E(CL_INVALID_BUILD_OPTIONS), E(CL_INVALID_PROGRAM), E(CL_INVALID_PROGRAM_EXECUTABLE),
        E(CL_INVALID_KERNEL_NAME), E(CL_INVALID_KERNEL_DEFINITION), E(CL_INVALID_KERNEL),
        E(CL_INVALID_ARG_INDEX), E(CL_INVALID_ARG_VALUE), E(CL_INVALID_ARG_SIZE),
        E(CL_INVALID_KERNEL_ARGS), E(CL_INVALID_WORK_DIMENSION), E(CL_INVALID_WORK_GROUP_SIZE),
        E(CL_INVALID_WORK_ITEM_SIZE), E(CL_INVALID_GLOBAL_OFFSET),
        E(CL_INVALID_EVENT_WAIT_LIST), E(CL_INVALID_EVENT), E(CL_INVALID_OPERATION),
        E(CL_INVALID_GL_OBJECT), E(CL_INVALID_BUFFER_SIZE), E(CL_INVALID_MIP_LEVEL),
        E(CL_INVALID_GLOBAL_WORK_SIZE), E(CL_INVALID_PROPERTY), E(CL_INVALID_IMAGE_DESCRIPTOR),
        E(CL_INVALID_COMPILER_OPTIONS), E(CL_INVALID_LINKER_OPTIONS),
        E(CL_INVALID_DEVICE_PARTITION_COUNT),
    };
#undef E
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_str_eq(qe_cl_errstr(want[i].code), want[i].name);
    ck_assert_str_eq(qe_cl_errstr(-1001), "CL_PLATFORM_NOT_FOUND_KHR");
    ck_assert_str_eq(qe_cl_errstr(12345), "CL_UNKNOWN_ERROR");
    ck_assert_str_eq(qe_cl_errstr(-20), "CL_UNKNOWN_ERROR");
    /* Every code in the standard ranges has a distinct name. */
    for (cl_int a = -72; a <= 0; a++) {
        if (a < -19 && a > -30)
            continue;
        ck_assert_str_ne(qe_cl_errstr(a), "CL_UNKNOWN_ERROR");
        for (cl_int b = a + 1; b <= 0; b++)
            ck_assert_str_ne(qe_cl_errstr(a), qe_cl_errstr(b));
    }
}
END_TEST

START_TEST(test_select_bad)
{
    qe_cl_device_info *list = NULL;
    size_t n = 0, idx = 0;
    OK(qe_cl_list(&list, &n));
    ck_assert_int_eq(qe_cl_select(list, n, "no-such-device-xyz", &idx), QE_ENOTFOUND);
    /* The message lists what exists. */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), list[0].name));
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "no-such-device-xyz"));
    char num[32];
    snprintf(num, sizeof num, "%zu", n);
    ck_assert_int_eq(qe_cl_select(list, n, num, &idx), QE_ENOTFOUND);
    ck_assert_int_eq(qe_cl_select(list, n, "99999999999999999999999", &idx), QE_ENOTFOUND);
    int has_gpu = 0;
    for (size_t i = 0; i < n; i++)
        has_gpu |= (list[i].type & CL_DEVICE_TYPE_GPU) != 0;
    if (!has_gpu)
        ck_assert_int_eq(qe_cl_select(list, n, "gpu", &idx), QE_ENOTFOUND);
    ck_assert_int_eq(qe_cl_select(list, 0, NULL, &idx), QE_ENOTFOUND);
    setenv("QEVAL_DEVICE", "bogus-device", 1);
    ck_assert_int_eq(qe_cl_select(list, n, NULL, &idx), QE_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "QEVAL_DEVICE"));
    qe_cl *cl = (qe_cl *)&idx;
    ck_assert_int_eq(qe_cl_open(NULL, 0, &cl), QE_ENOTFOUND);
    ck_assert_ptr_null(cl);
    unsetenv("QEVAL_DEVICE");
    qe_cl_list_free(list, n);
}
END_TEST

START_TEST(test_build_errors)
{
    qe_cl *cl = qe_test_cl();
    cl_program p = (cl_program)&p;
    /* A compile error: QE_ECL with the log's words in the message. */
    static const char broken[] = "__kernel void broken(__global float *x)\n"
                                 "{ x[0] = undeclared_thing_42 + 1.0f; }\n";
    char *path = qe_test_write(tmp, "broken.cl", broken, sizeof broken - 1);
    ck_assert_ptr_nonnull(path);
    setenv("QEVAL_KERNEL_DIR", tmp, 1);
    int bins = count_bins(qe_test_cl_cache_dir());
    int lvl = qe_log_level();
    qe_log_set_level(QE_LOG_QUIET);
    ck_assert_int_eq(qe_cl_build1(cl, "broken", "-DX=1", &p), QE_ECL);
    qe_log_set_level(lvl);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(qe_errmsg(), "CL_BUILD_PROGRAM_FAILURE"), "%s", qe_errmsg());
    ck_assert_msg(strstr(qe_errmsg(), "undeclared_thing_42"), "%s", qe_errmsg());
    ck_assert_msg(strstr(qe_errmsg(), "broken.cl"), "%s", qe_errmsg());
    /* one line: the log's lines joined (status.h) */
    ck_assert_msg(strstr(qe_errmsg(), "build log: ") && !strchr(qe_errmsg(), '\n'), "%s",
                  qe_errmsg());
    /* Failed builds leave nothing in the cache. */
    ck_assert_int_eq(count_bins(qe_test_cl_cache_dir()), bins);

    /* Bad build options. */
    unsetenv("QEVAL_KERNEL_DIR");
    qe_log_set_level(QE_LOG_QUIET);
    ck_assert_int_eq(qe_cl_build1(cl, "util", "-DQE_X=1 -cl-no-such-option-xyz", &p), QE_ECL);
    qe_log_set_level(lvl);

    /* Names. */
    ck_assert_int_eq(qe_cl_build1(cl, "no_such_kernel_file", NULL, &p), QE_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "no_such_kernel_file.cl"));
    ck_assert_int_eq(qe_cl_build1(cl, "", NULL, &p), QE_EINVAL);
    ck_assert_int_eq(qe_cl_build1(cl, "../util", NULL, &p), QE_EINVAL);
    ck_assert_int_eq(qe_cl_build1(cl, ".cl", NULL, &p), QE_EINVAL);
    ck_assert_int_eq(qe_cl_build1(cl, "a/b.cl", NULL, &p), QE_EINVAL);
    ck_assert_int_eq(qe_cl_build1(cl, NULL, NULL, &p), QE_EINVAL);
    const char *many[17];
    for (int i = 0; i < 17; i++)
        many[i] = "util";
    ck_assert_int_eq(qe_cl_build(cl, many, 17, NULL, &p), QE_EINVAL);
    ck_assert_int_eq(qe_cl_build(cl, many, 0, NULL, &p), QE_EINVAL);
    /* A directory in place of a source file. */
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/dir.cl", tmp);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    setenv("QEVAL_KERNEL_DIR", tmp, 1);
    ck_assert_int_eq(qe_cl_build1(cl, "dir", NULL, &p), QE_EIO);
    /* A NUL byte inside a source is corrupt input, reported with its offset. */
    char *nul = qe_test_write(tmp, "nul.cl", "kernel\0void", 11);
    ck_assert_int_eq(qe_cl_build1(cl, "nul", NULL, &p), QE_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "offset 6"));
    free(nul);
    free(path);
}
END_TEST

START_TEST(test_buffer_limits)
{
    qe_cl *cl = qe_test_cl();
    const qe_cl_device_info *d = qe_cl_device(cl);
    cl_mem m = (cl_mem)&m, b = NULL;
    unsigned char buf[64] = {0};
    ck_assert_int_eq(qe_cl_alloc(cl, 0, QE_CL_RW, NULL, &m), QE_EINVAL);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(qe_cl_alloc(cl, 16, QE_CL_RO | QE_CL_WO, NULL, &m), QE_EINVAL);
    if (d->max_alloc < SIZE_MAX) {
        ck_assert_int_eq(qe_cl_alloc(cl, (size_t)d->max_alloc + 1, QE_CL_RW, NULL, &m), QE_ERANGE);
        ck_assert_ptr_nonnull(strstr(qe_errmsg(), d->name));
    }
    OK(qe_cl_alloc(cl, 64, QE_CL_RW, NULL, &b));
    ck_assert_int_eq(qe_cl_read(cl, b, 1, 64, buf), QE_ERANGE);
    ck_assert_int_eq(qe_cl_read(cl, b, 65, 0, buf), QE_ERANGE);
    ck_assert_int_eq(qe_cl_write(cl, b, SIZE_MAX, 2, buf, 1), QE_ERANGE);
    ck_assert_int_eq(qe_cl_write(cl, b, 8, SIZE_MAX - 4, buf, 1), QE_ERANGE);
    ck_assert_int_eq(qe_cl_copy(cl, b, 0, b, 32, 33), QE_ERANGE);
    ck_assert_int_eq(qe_cl_copy(cl, b, 0, b, 16, 32), QE_ECL); /* overlapping */
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "CL_MEM_COPY_OVERLAP"));
    uint32_t pat = 7;
    ck_assert_int_eq(qe_cl_fill(cl, b, &pat, 3, 0, 63), QE_EINVAL);
    ck_assert_int_eq(qe_cl_fill(cl, b, &pat, 4, 2, 8), QE_EINVAL);
    ck_assert_int_eq(qe_cl_fill(cl, b, &pat, 4, 0, 68), QE_ERANGE);
    ck_assert_int_eq(qe_cl_fill(cl, b, &pat, 0, 0, 4), QE_EINVAL);
    ck_assert_int_eq(qe_cl_sub(cl, b, 0, 65, &m), QE_ERANGE);
    ck_assert_int_eq(qe_cl_sub(cl, b, 0, 0, &m), QE_ERANGE);
    if (d->mem_base_align > 1)
        ck_assert_int_eq(qe_cl_sub(cl, b, 1, 8, &m), QE_EINVAL);
    qe_cl_free(b);
}
END_TEST

START_TEST(test_kernel_limits)
{
    qe_cl *cl = qe_test_cl();
    cl_program p = NULL;
    cl_kernel k = (cl_kernel)&k;
    OK(qe_cl_build1(cl, "util", NULL, &p));
    ck_assert_int_eq(qe_cl_kernel(p, "no_such_kernel", &k), QE_ECL);
    ck_assert_ptr_null(k);
    ck_assert_msg(strstr(qe_errmsg(), "clCreateKernel(no_such_kernel): CL_INVALID_KERNEL_NAME"),
                  "%s", qe_errmsg());
    OK(qe_cl_kernel(p, "fill_f32", &k));
    float v = 1;
    ck_assert_int_eq(qe_cl_arg(k, 7, sizeof v, &v), QE_ECL);
    ck_assert_msg(strstr(qe_errmsg(), "fill_f32, arg 7"), "%s", qe_errmsg());
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "CL_INVALID_ARG_INDEX"));
    ck_assert_int_eq(qe_cl_arg(k, 1, 2, &v), QE_ECL); /* wrong size for a float */
    size_t g[3] = {64, 1, 1}, l[3] = {32, 1, 1}, bad[3] = {60, 1, 1}, zero[3] = {0, 1, 1};
    ck_assert_int_eq(qe_cl_run(cl, k, 0, g, l, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_cl_run(cl, k, 4, g, l, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_cl_run(cl, k, 1, bad, l, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "fill_f32"));
    ck_assert_int_eq(qe_cl_run(cl, k, 1, zero, NULL, NULL), QE_EINVAL);
    /* Queues and wait lists: only the two queues, a list for n events. */
    cl_event none[1] = {NULL};
    ck_assert_int_eq(qe_cl_run_on(cl, 2, k, 1, g, l, 0, NULL, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "queue 2"));
    ck_assert_int_eq(qe_cl_run_on(cl, -1, k, 1, g, l, 0, NULL, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_cl_run_on(cl, QE_CL_SIDE, k, 1, g, l, 1, NULL, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_cl_run_on(cl, QE_CL_SIDE, k, 1, g, l, 0, none, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_cl_run_on(cl, QE_CL_SIDE, k, 1, g, l, 1, none, NULL), QE_EINVAL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "event 0 of the wait list is NULL"));
    ck_assert_int_eq(qe_cl_barrier(cl, 7, 0, NULL, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_cl_barrier(cl, QE_CL_MAIN, 2, NULL, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_cl_barrier(cl, QE_CL_SIDE, 1, none, NULL), QE_EINVAL);
    ck_assert_int_eq(qe_cl_event_retain(NULL), QE_ECL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "clRetainEvent"));
    /* Arguments not set: the driver refuses; the message names the kernel. */
    cl_event ev = (cl_event)&ev;
    ck_assert_int_eq(qe_cl_run(cl, k, 1, g, l, &ev), QE_ECL);
    ck_assert_ptr_null(ev);
    ck_assert_msg(strstr(qe_errmsg(), "clEnqueueNDRangeKernel(fill_f32)"), "%s", qe_errmsg());
    /* A work-group larger than the kernel allows. */
    size_t max_wg = 0, mult = 0;
    uint64_t lm = 1;
    OK(qe_cl_kernel_limits(cl, k, &max_wg, &mult, &lm));
    ck_assert_uint_ge(max_wg, 1);
    ck_assert_uint_ge(mult, 1);
    OK(qe_cl_kernel_limits(cl, k, NULL, NULL, NULL));
    cl_mem x = NULL;
    cl_uint n = 4;
    /* Twice the device-wide limit: NVIDIA's driver accepts launches above
     * the per-kernel CL_KERNEL_WORK_GROUP_SIZE it reports, but the spec
     * requires it to refuse one above CL_DEVICE_MAX_WORK_GROUP_SIZE. */
    const qe_cl_device_info *di = qe_cl_device(cl);
    size_t dev_max = di->max_wg_size > di->max_wi_sizes[0] ? di->max_wg_size : di->max_wi_sizes[0];
    size_t big = (dev_max > max_wg ? dev_max : max_wg) * 2;
    OK(qe_cl_alloc(cl, big * sizeof(float), QE_CL_RW, NULL, &x));
    OK(qe_cl_args(k, 3, sizeof x, &x, sizeof v, &v, sizeof n, &n));
    ck_assert_int_eq(qe_cl_run(cl, k, 1, &big, &big, NULL), QE_ECL);
    ck_assert_ptr_nonnull(strstr(qe_errmsg(), "fill_f32"));
    OK(qe_cl_finish(cl));
    qe_cl_free(x);
    qe_cl_kernel_free(k);
    qe_cl_kernel_free(NULL);
    qe_cl_program_free(p);
    qe_cl_program_free(NULL);
}
END_TEST

Suite *cl_suite(void)
{
    Suite *s = suite_create("cl");
    TCase *core = tcase_create("core");
    tcase_add_unchecked_fixture(core, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_checked_fixture(core, tmp_setup, tmp_teardown);
    tcase_set_timeout(core, 300);
    tcase_add_test(core, test_list);
    tcase_add_test(core, test_select);
    tcase_add_test(core, test_open);
    tcase_add_test(core, test_util_kernels);
    tcase_add_test(core, test_buffers);
    tcase_add_test(core, test_silu_xh);
    tcase_add_test(core, test_rmsnorm_xh);
    tcase_add_test(core, test_rms_wide);
    tcase_add_test(core, test_profiling);
    tcase_add_test(core, test_side_queue);
    tcase_add_test(core, test_profile_take);
    tcase_add_test(core, test_profile_trace);
    tcase_add_test(core, test_probe);
    tcase_add_test(core, test_wgmma_patch);
    tcase_add_test(core, test_multi_source);
    suite_add_tcase(s, core);

    TCase *cache = tcase_create("cache");
    tcase_add_unchecked_fixture(cache, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_checked_fixture(cache, tmp_setup, tmp_teardown);
    tcase_set_timeout(cache, 300);
    tcase_add_test(cache, test_cache_hit);
    tcase_add_test(cache, test_cache_corrupt);
    tcase_add_test(cache, test_cache_garbage_binary);
    tcase_add_test(cache, test_no_cache);
    tcase_add_test(cache, test_cache_dir);
    tcase_add_test(cache, test_cache_unwritable);
    tcase_add_test(cache, test_kernel_dir);
    suite_add_tcase(s, cache);

    TCase *lim = tcase_create("limits");
    tcase_add_unchecked_fixture(lim, qe_test_cl_setup, qe_test_cl_teardown);
    tcase_add_checked_fixture(lim, tmp_setup, tmp_teardown);
    tcase_set_timeout(lim, 300);
    tcase_add_test(lim, test_errstr);
    tcase_add_test(lim, test_select_bad);
    tcase_add_test(lim, test_build_errors);
    tcase_add_test(lim, test_wgmma_patch_limits);
    tcase_add_test(lim, test_buffer_limits);
    tcase_add_test(lim, test_kernel_limits);
    suite_add_tcase(s, lim);
    return s;
}
