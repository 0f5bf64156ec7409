/* wgmma_probe.c - can an OpenCL program on NVIDIA issue Hopper's wgmma?
 *   cc -O2 -o /tmp/wgmma_probe bench/wgmma_probe.c -lOpenCL &&
 *       /tmp/wgmma_probe kernels/ptx.cl kernels/wgmma.cl bench/wgmma_probe.cl
 * NVIDIA's OpenCL compiler emits PTX for sm_90 (its program binaries are that
 * PTX), and ptxas takes wgmma only for sm_90a. This probe builds
 * wgmma_probe.cl from source (its wgmma steps written as PTX comments, which
 * compile anywhere), takes the program's PTX, replaces the comments with the
 * instructions, and loads it back with clCreateProgramWithBinary in three
 * forms: (1) as compiled (the comments left: d stays 0), (2) the
 * instructions with `.target sm_90a`, (3) the instructions with the
 * compiler's own target (expected to fail to build). For each it prints
 * whether it built, the build log's head if not, and d = a b^T against
 * the host's (small integers: exact). A development aid, not part of qeval.
 * Its PTX patching (wgmma_ptx) is lib/cl's qe_cl_wgmma_patch again, plus
 * the m64n8k16 step with A in registers that only this probe uses, written
 * apart so that the probe still builds with one cc command as the other
 * probes do (lib/cl's needs the library's status, log and kernel tables);
 * a change of marker syntax in kernels/wgmma.cl must reach both. */
#define CL_TARGET_OPENCL_VERSION 120
#include "probe_util.h"

#include <math.h>

static uint16_t h_of(int v) /* a small integer as IEEE half */
{
    if (v == 0)
        return 0;
    uint16_t s = v < 0 ? 0x8000 : 0;
    int m = v < 0 ? -v : v, e = 0;
    while ((m >> e) > 1)
        e++;
    return (uint16_t)(s | (uint16_t)((e + 15) << 10) | (uint16_t)(((m << 10) >> e) & 0x3FF));
}

/* src with every line holding `from` replaced by `to` (to may use the
 * text after `from` on that line, as %s); the result is malloc'd */
static char *subst_lines(const char *src, const char *from, const char *to)
{
    size_t cap = strlen(src) * 2 + 4096, n = 0;
    char *out = malloc(cap);
    const char *p = src;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) + 1 : strlen(p);
        const char *hit = strstr(p, from);
        if (hit && hit < p + len) {
            char rest[2048] = {0};
            size_t rl = (size_t)(p + len - (hit + strlen(from)));
            memcpy(rest, hit + strlen(from), rl < 2047 ? rl : 2047);
            char *nl = strchr(rest, '\n');
            if (nl)
                *nl = 0;
            n += (size_t)snprintf(out + n, cap - n, to, rest);
            out[n++] = '\n';
        } else {
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
    }
    out[n] = 0;
    return out;
}

static char *replace_all(char *s, const char *from, const char *to)
{
    char *r = subst_lines(s, from, to);
    free(s);
    return r;
}

/* The program's PTX with wgmma_probe.cl's comments replaced by the
 * instructions and, where the compiler's target is sm_90, `.target sm_90a`
 * (the result); *same_target (if not NULL) gets the same with the
 * compiler's own target. */
static char *wgmma_ptx(const char *ptx, char **same_target)
{
    char target[64] = {0};
    const char *tgt = strstr(ptx, ".target");
    if (tgt)
        sscanf(tgt, ".target %63[a-z_0-9]", target);
    /* the instructions in place of the comments (longer markers first:
       each matches as a prefix); every wgmma accumulates (scale-d true) */
    char *with = strdup(ptx);
    with = replace_all(with, "// @WGPROXY", "\tfence.proxy.async.shared::cta;");
    with = replace_all(with, "// @WGFENCE", "\twgmma.fence.sync.aligned;");
    with = replace_all(with, "// @WGCOMMIT", "\twgmma.commit_group.sync.aligned;");
    with = replace_all(with, "// @WGWAIT", "\twgmma.wait_group.sync.aligned %s;");
#define WG_SCALE_D "{ .reg .pred wgp; .reg .b32 wgs; mov.b32 wgs, 1; setp.ne.b32 wgp, wgs, 0; "
    /* "{d}, {a}, b-desc": then scale-d, scale-a 1, scale-b 1, b not transposed */
    with = replace_all(with, "// @WGMMA8RS",
                       "\t" WG_SCALE_D "wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 %s, "
                       "wgp, 1, 1, 0; }");
    with = replace_all(with, "// @WGMMA128RS",
                       "\t" WG_SCALE_D "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 %s, "
                       "wgp, 1, 1, 0; }");
    /* "{d}, a-desc, b-desc": then scale-d, scale-a, scale-b, neither transposed */
    with = replace_all(with, "// @WGMMA128SS",
                       "\t" WG_SCALE_D "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 %s, "
                       "wgp, 1, 1, 0, 0; }");
    /* wgmma needs PTX ISA 8.0 */
    char *v = strstr(with, ".version ");
    int vmaj = 0, vmin = 0;
    if (v && sscanf(v, ".version %d.%d", &vmaj, &vmin) == 2 && vmaj < 8)
        memcpy(v, ".version 8.0", 12);
    char *a_ptx = NULL;
    {
        char from[80], to[80];
        snprintf(from, sizeof from, ".target %s", target);
        snprintf(to, sizeof to, ".target %s%s%%s", target, strcmp(target, "sm_90") ? "" : "a");
        a_ptx = subst_lines(with, from, to); /* the line's rest (", texmode_...") kept */
    }
    if (same_target)
        *same_target = with;
    return a_ptx;
}

/* Outputs of d (M x N) that differ from a b^T of the host's integers a (M
 * x K) and b (N x K); their largest |difference| into *maxd and the count
 * of zero outputs into *zero. */
static int count_bad(const float *d, const int *a, const int *b, int M, int N, int K,
                     double *maxd, int *zero)
{
    int bad = 0;
    *maxd = 0;
    *zero = 0;
    for (int r = 0; r < M; r++)
        for (int n = 0; n < N; n++) {
            int ref = 0;
            for (int kk = 0; kk < K; kk++)
                ref += a[r * K + kk] * b[n * K + kk];
            double x = fabs((double)d[r * N + n] - ref);
            *maxd = x > *maxd ? x : *maxd;
            bad += x != 0;
            *zero += d[r * N + n] == 0.0f;
        }
    return bad;
}

/* wg_tile of prog (built for sm_90a): d = a b^T for one 128 x 128 x 32
 * tile against the host's, then the rate of its two m64n128k16 steps
 * repeated, on groups work-groups of two warpgroups. */
static void tile_test(cl_context ctx, cl_device_id dev, cl_program prog)
{
    cl_int err;
    cl_command_queue q = clCreateCommandQueue(ctx, dev, CL_QUEUE_PROFILING_ENABLE, &err);
    need(err, "profiling queue");
    cl_kernel k = clCreateKernel(prog, "wg_tile", &err);
    need(err, "wg_tile");
    static uint16_t ah[128 * 32], bh[128 * 32];
    static int ai[128 * 32], bi[128 * 32];
    static float d[128 * 128];
    for (int i = 0; i < 128 * 32; i++) {
        ai[i] = (int)((i * 7 + 3) % 9) - 4;
        bi[i] = (int)((i * 5 + 1) % 7) - 3;
        ah[i] = h_of(ai[i]);
        bh[i] = h_of(bi[i]);
    }
    cl_mem ab = clCreateBuffer(ctx, CL_MEM_COPY_HOST_PTR, sizeof ah, ah, &err);
    need(err, "a");
    cl_mem bb = clCreateBuffer(ctx, CL_MEM_COPY_HOST_PTR, sizeof bh, bh, &err);
    need(err, "b");
    /* one d per work-group: the timed launches write theirs too */
    const size_t max_groups = 528;
    cl_mem db = clCreateBuffer(ctx, CL_MEM_READ_WRITE, sizeof d * max_groups, NULL, &err);
    need(err, "d");
    int iters = 1;
    need(clSetKernelArg(k, 0, sizeof ab, &ab), "arg");
    need(clSetKernelArg(k, 1, sizeof bb, &bb), "arg");
    need(clSetKernelArg(k, 2, sizeof db, &db), "arg");
    need(clSetKernelArg(k, 3, sizeof iters, &iters), "arg");
    size_t g = 256, l = 256;
    need(clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &l, 0, NULL, NULL), "wg_tile");
    need(clEnqueueReadBuffer(q, db, CL_TRUE, 0, sizeof d, d, 0, NULL, NULL), "read d");
    double maxd = 0;
    int zero = 0, bad = count_bad(d, ai, bi, 128, 128, 32, &maxd, &zero);
    printf("wg_tile (128 x 128 x 32, two warpgroups, A and B by descriptor): %d of 16384 outputs "
           "differ from the host's (max |d| %g); d[0][0..3] = %g %g %g %g\n",
           bad, maxd, d[0], d[1], d[2], d[3]);
    /* the rate: groups x 2 warpgroups x iters x 2 steps of 2 x 64 x 128 x 16 */
    iters = 4096;
    need(clSetKernelArg(k, 3, sizeof iters, &iters), "arg");
    const size_t groups[] = {132, 264, 528};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        double t[5];
        for (int rep = 0; rep < 5; rep++)
            t[rep] = timed_launch(q, k, 256 * groups[i], 256, "wg_tile timed");
        qsort(t, 5, sizeof t[0], cmp_d);
        const double flop = (double)groups[i] * 2 * iters * 2 * (2.0 * 64 * 128 * 16);
        printf("wgmma m64n128k16 f16->f32, A and B from local memory, %zu work-groups of two "
               "warpgroups, %d x 2 steps each: %.1f TFLOP/s (median of 5, %.3f ms)\n",
               groups[i], iters, flop / t[2] * 1e-12, t[2] * 1e3);
    }
    clReleaseMemObject(ab);
    clReleaseMemObject(bb);
    clReleaseMemObject(db);
    clReleaseKernel(k);
    clReleaseCommandQueue(q);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s kernels/ptx.cl kernels/wgmma.cl bench/wgmma_probe.cl\n"
                        "       %s --ptx FILE   (print FILE's PTX with the wgmma steps in)\n",
                argv[0], argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "--ptx") == 0) {
        char *in = slurp(1, argv + 2);
        if (!in)
            return 2;
        char *out = wgmma_ptx(in, NULL);
        fputs(out, stdout);
        return 0;
    }
    cl_context ctx;
    cl_command_queue q;
    cl_device_id dev;
    char *ptx = probe_open_ptx(argc - 1, argv + 1, &ctx, &q, &dev);
    if (!ptx)
        return 2;
    cl_int err;

    char *with = NULL, *a_ptx = wgmma_ptx(ptx, &with);
    const char *m = strstr(a_ptx, "wgmma.mma_async");
    printf("the wgmma line: %.*s\n", m ? (int)strcspn(m, "\n") : 0, m ? m : "(none)");

    struct {
        const char *what;
        const char *ptx;
        int wg;
    } forms[] = {{"(1) the compiled PTX as a binary (comments, no wgmma)", ptx, 0},
                 {"(2) wgmma, .target sm_90a", a_ptx, 1},
                 {"(3) wgmma, the compiler's own target", with, 1}};
    /* a: 64 x 16, b: 8 x 16 small integers */
    uint16_t ah[64 * 16], bh[8 * 16];
    int ai[64 * 16], bi[8 * 16];
    for (int i = 0; i < 64 * 16; i++) {
        ai[i] = (int)((i * 7 + 3) % 9) - 4;
        ah[i] = h_of(ai[i]);
    }
    for (int i = 0; i < 8 * 16; i++) {
        bi[i] = (int)((i * 5 + 1) % 7) - 3;
        bh[i] = h_of(bi[i]);
    }
    cl_mem ab = clCreateBuffer(ctx, CL_MEM_COPY_HOST_PTR, sizeof ah, ah, &err);
    need(err, "a");
    cl_mem bb = clCreateBuffer(ctx, CL_MEM_COPY_HOST_PTR, sizeof bh, bh, &err);
    need(err, "b");
    cl_mem db = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 64 * 8 * sizeof(float), NULL, &err);
    need(err, "d");
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        size_t len = strlen(forms[f].ptx);
        const unsigned char *bin = (const unsigned char *)forms[f].ptx;
        cl_int bs = 0;
        cl_program p = clCreateProgramWithBinary(ctx, 1, &dev, &len, &bin, &bs, &err);
        if (err != CL_SUCCESS) {
            printf("%s: clCreateProgramWithBinary failed (%d, binary status %d)\n", forms[f].what,
                   (int)err, (int)bs);
            continue;
        }
        err = clBuildProgram(p, 1, &dev, "", NULL, NULL);
        if (err != CL_SUCCESS) {
            char log[4096] = {0};
            clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
            printf("%s: does not build (%d): %.600s\n", forms[f].what, (int)err, log);
            clReleaseProgram(p);
            continue;
        }
        cl_kernel k = clCreateKernel(p, "wg_probe", &err);
        need(err, "clCreateKernel");
        need(clSetKernelArg(k, 0, sizeof ab, &ab), "arg");
        need(clSetKernelArg(k, 1, sizeof bb, &bb), "arg");
        need(clSetKernelArg(k, 2, sizeof db, &db), "arg");
        float d[64 * 8];
        const float poison = -1234.5f;
        for (int i = 0; i < 64 * 8; i++)
            d[i] = poison;
        need(clEnqueueWriteBuffer(q, db, CL_TRUE, 0, sizeof d, d, 0, NULL, NULL), "poison");
        size_t g = 128, l = 128;
        err = clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &l, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueReadBuffer(q, db, CL_TRUE, 0, sizeof d, d, 0, NULL, NULL);
        if (err != CL_SUCCESS) {
            printf("%s: built, the launch failed (%d)\n", forms[f].what, (int)err);
        } else {
            double maxd = 0;
            int zero = 0, bad = count_bad(d, ai, bi, 64, 8, 16, &maxd, &zero);
            printf("%s: built and ran: %d of 512 outputs differ from the host's a b^T (max |d| "
                   "%g), %d are 0; d[0][0..3] = %g %g %g %g\n",
                   forms[f].what, bad, maxd, zero, d[0], d[1], d[2], d[3]);
        }
        clReleaseKernel(k);
        if (forms[f].wg && f == 1)
            tile_test(ctx, dev, p);
        clReleaseProgram(p);
    }
    return 0;
}
