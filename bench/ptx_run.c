/* ptx_run.c - run one of kernels/mma.cl's matmul kernels from the PTX that
 * NVIDIA's OpenCL compiler made of it (bench/cl_regs.c with CL_REGS_PTX),
 * through the CUDA driver API, so that Nsight Compute (which profiles CUDA
 * launches, not OpenCL ones) can say where its time goes. Development aid
 * on the GPU machine, not part of qeval:
 *   cc -O2 -o /tmp/ptx_run bench/ptx_run.c -I/usr/local/cuda/include -lcuda
 *   /tmp/ptx_run FILE.ptx tile|skinny WT M N K [NW] [REPS]
 * WT is QE_WT (1 f16, 2 q8_0, 3 q4_0); M rows, N outputs (split evenly
 * over NW weights for skinny, as Q/K/V or gate/up share a launch), K the
 * inner size. The work-group shape must match the PTX's build: tile uses
 * MT_BM (env, default 128) rows; every build WI (env, default 256)
 * work-items a work-group (the build's MT_WI); skinny MS_MT and MS_NB
 * (env, default 1 and 2); for the one-row build (-DMS_X1) XOP (env: 0 the
 * row as it is, 1 normed, 2 SwiGLU) and MS_GROUPS (env: work-groups along the
 * blocks, 0 one a block). Weights and X are random (no NaN or inf); the
 * output is not checked (tests/check_mma.c does that through OpenCL).
 * Prints the median time of REPS launches (each timed by its own events). */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ck(CUresult r, const char *what)
{
    if (r != CUDA_SUCCESS) {
        const char *s = "?";
        cuGetErrorString(r, &s);
        fprintf(stderr, "%s: %s\n", what, s);
        exit(1);
    }
}

static uint32_t rnd_state = 12345u;
static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1664525u + 1013904223u;
    return rnd_state >> 8;
}
/* a small f16 (|v| < 2^-3), random sign and mantissa */
static uint16_t rnd_half(void) { return (uint16_t)(0x2000u | (rnd() & 0x83ffu)); }

static CUdeviceptr upload(const void *p, size_t n)
{
    CUdeviceptr d;
    ck(cuMemAlloc(&d, n), "cuMemAlloc");
    ck(cuMemcpyHtoD(d, p, n), "cuMemcpyHtoD");
    return d;
}

static int env_int(const char *k, int dflt)
{
    const char *v = getenv(k);
    return v ? atoi(v) : dflt;
}

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s FILE.ptx tile|skinny WT M N K [NW] [REPS]\n", argv[0]);
        return 2;
    }
    const int tile = strcmp(argv[2], "tile") == 0, wt = atoi(argv[3]);
    const int M = atoi(argv[4]), N = atoi(argv[5]), K = atoi(argv[6]);
    const int nw = argc > 7 ? atoi(argv[7]) : 1, reps = argc > 8 ? atoi(argv[8]) : 20;
    if (M < 1 || N < 1 || K < 32 || K % 32 || nw < 1 || nw > 3 || N % nw || reps < 1 ||
        wt < 1 || wt > 3 || (tile && nw != 1)) { /* mma_tile takes one weight */
        fprintf(stderr, "bad sizes\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    const long fl = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *ptx = calloc((size_t)fl + 1, 1);
    if (!ptx || fread(ptx, 1, (size_t)fl, f) != (size_t)fl)
        return 1;
    fclose(f);

    ck(cuInit(0), "cuInit");
    CUdevice dev;
    CUcontext ctx;
    CUmodule mod;
    CUfunction fn;
    ck(cuDeviceGet(&dev, 0), "cuDeviceGet");
    ck(cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
    ck(cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
    ck(cuModuleLoadData(&mod, ptx), "cuModuleLoadData");
    ck(cuModuleGetFunction(&fn, mod, tile ? "mma_tile" : "mma_skinny"), "cuModuleGetFunction");
    int regs = 0;
    cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, fn);

    /* weights in weights.cl's layouts */
    const int nb = K / 32, sb = (2 * nb + 15) & ~15;
    const size_t rb = wt == 1 ? 2 * (size_t)K : (size_t)sb + (size_t)nb * (wt == 2 ? 32 : 16);
    const int nper = N / nw;
    unsigned char *w = malloc(rb * (size_t)nper);
    for (size_t r = 0; r < (size_t)nper; r++) {
        unsigned char *row = w + r * rb;
        if (wt == 1) {
            for (int k = 0; k < K; k++)
                ((uint16_t *)row)[k] = rnd_half();
        } else {
            memset(row, 0, (size_t)sb);
            for (int b = 0; b < nb; b++)
                ((uint16_t *)row)[b] = rnd_half();
            for (size_t i = (size_t)sb; i < rb; i++)
                row[i] = (unsigned char)rnd();
        }
    }
    CUdeviceptr dw[3] = {0, 0, 0}, dy;
    for (int i = 0; i < nw; i++)
        dw[i] = upload(w, rb * (size_t)nper);
    ck(cuMemAlloc(&dy, sizeof(float) * (size_t)M * (size_t)N), "cuMemAlloc y");

    CUdeviceptr dx;
    int ldp = ((K / 2 + 15) / 16) * 16;
    if (tile) {
        uint32_t *xh = malloc(sizeof(uint32_t) * (size_t)M * (size_t)ldp);
        for (size_t i = 0; i < (size_t)M * (size_t)ldp; i++)
            xh[i] = rnd_half() | ((uint32_t)rnd_half() << 16);
        dx = upload(xh, sizeof(uint32_t) * (size_t)M * (size_t)ldp);
    } else {
        float *x = malloc(sizeof(float) * (size_t)M * (size_t)K);
        for (size_t i = 0; i < (size_t)M * (size_t)K; i++)
            x[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
        dx = upload(x, sizeof(float) * (size_t)M * (size_t)K);
    }

    /* arguments in the kernels' order (kernels/mma.cl) */
    void *args[37];
    uint64_t x_off = 0, rbu = rb;
    int n_rows = M, kk = K, zero = 0, y_seq = M, ldy = N;
    /* mma_skinny's row as it is (XOP 0, MS_XP_COPY), or made by its MS_X1
       build (1: RMSNorm, 2: SwiGLU), with X itself as the second operand */
    int xop = env_int("XOP", 0);
    CUdeviceptr xp = 0, none = 0;
    float eps = 1e-5f;
    int hd = 64, n_ctx = 1;
    uint64_t kvb = 0;
    int nn[3] = {0, 0, 0};
    CUdeviceptr yy[3] = {0, 0, 0};
    unsigned gx, gy;
    if (tile) {
        const int bm = env_int("MT_BM", 128);
        void *a[] = {&dx, &ldp, &n_rows, &dw[0], &rbu, &kk, &nn[0], &dy, &ldy, &y_seq, &zero, &zero};
        nn[0] = nper;
        ldy = nper;
        memcpy(args, a, sizeof a);
        gx = (unsigned)((nper + 127) / 128);
        gy = (unsigned)((M + bm - 1) / bm);
    } else {
        const int mt = env_int("MS_MT", 1), nbk = env_int("MS_NB", 2);
        unsigned blocks = 0;
        for (int i = 0; i < nw; i++) {
            nn[i] = nper;
            yy[i] = dy + sizeof(float) * (size_t)i * (size_t)nper;
            blocks += (unsigned)((nper + 8 * nbk - 1) / (8 * nbk));
        }
        if (xop)
            xp = dx;
        void *a[] = {&dx,    &x_off, &kk,    &n_rows, &kk,   &dw[0], &rbu,  &nn[0],
                     &yy[0], &ldy,   &dw[1], &rbu,    &nn[1], &yy[1], &ldy, &dw[2],
                     &rbu,   &nn[2], &yy[2], &ldy,    &y_seq, &zero,  &zero, /* 0 .. 22 */
                     &xp,    &xop,   &eps,   &none,   &none,  &none,  &hd,  &zero,
                     &n_ctx, &none,  &kvb,   &none,   &kvb,   &zero}; /* the MS_X1 build's */
        memcpy(args, a, sizeof a);
        gx = (unsigned)((M + 16 * mt - 1) / (16 * mt));
        /* MS_GROUPS: fewer work-groups than blocks, each taking several in
           turn (the MS_X1 build's launches: lib/engine.c x1_groups_of) */
        gy = env_int("MS_GROUPS", 0) > 0 ? (unsigned)env_int("MS_GROUPS", 0) : blocks;
    }
    CUevent e0, e1;
    ck(cuEventCreate(&e0, 0), "cuEventCreate");
    ck(cuEventCreate(&e1, 0), "cuEventCreate");
    float *ms = malloc(sizeof(float) * (size_t)reps);
    /* WI: work-items a work-group (the build's MT_WI: 512 for mma_tile's 256-row MT_WG build) */
    const unsigned wi = (unsigned)env_int("WI", 256);
    ck(cuLaunchKernel(fn, gx, gy, 1, wi, 1, 1, 0, NULL, args, NULL), "cuLaunchKernel");
    ck(cuCtxSynchronize(), "warm-up");
    for (int r = 0; r < reps; r++) {
        ck(cuEventRecord(e0, NULL), "cuEventRecord");
        ck(cuLaunchKernel(fn, gx, gy, 1, wi, 1, 1, 0, NULL, args, NULL), "cuLaunchKernel");
        ck(cuEventRecord(e1, NULL), "cuEventRecord");
        ck(cuEventSynchronize(e1), "cuEventSynchronize");
        ck(cuEventElapsedTime(&ms[r], e0, e1), "cuEventElapsedTime");
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_float);
    const double t = ms[reps / 2] * 1e-3;
    const double flop = 2.0 * M * (double)N * K, wbytes = (double)rb * nper * nw;
    printf("%s wt %d M %d N %d K %d (%d weights): grid %u x %u, %d registers: median %.2f us "
           "(min %.2f), %.1f TFLOP/s, weights %.2f TB/s\n",
           argv[2], wt, M, N, K, nw, gx, gy, regs, t * 1e6, ms[0] * 1e3, flop / t * 1e-12,
           wbytes / t * 1e-12);
    /* FNV-1a of the outputs (the last repetition's): builds that sum alike
       print the same hash */
    const size_t ny = (size_t)M * (size_t)N;
    float *yh = malloc(sizeof(float) * ny);
    ck(cuMemcpyDtoH(yh, dy, sizeof(float) * ny), "cuMemcpyDtoH");
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(float) * ny; i++)
        h = (h ^ ((const unsigned char *)yh)[i]) * 1099511628211ull;
    printf("  outputs' hash %016llx\n", (unsigned long long)h);
    return 0;
}
