/* stream_probe.c - how fast three access patterns read one Q8_0 weight
 * matrix on the GPU (bench/stream_probe.cl): mma_skinny's own (8 rows x 32
 * bytes a warp load), rows front to back (16 bytes a work-item, contiguous),
 * and rows staged into local memory by cp.async before the skinny
 * fragments are read. A development aid for the decode GEMV, not part of
 * qeval:
 *   cc -O2 -o /tmp/stream_probe bench/stream_probe.c -lOpenCL
 *   /tmp/stream_probe "OPTIONS" kernels/ptx.cl bench/stream_probe.cl
 * OPTIONS may set -DPU (chunks in flight a warp, skinny pattern), -DPS_CH and
 * -DPS_RING (bytes a row a stage, stages; staged pattern). Prints, per matrix
 * shape (Llama-3.2-1B's down, gate/up, wo, LM head), the
 * median of 20 launches of each kernel in GB/s of the matrix's bytes. */
#define CL_TARGET_OPENCL_VERSION 120
#include "probe_util.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s OPTIONS FILE.cl...\n", argv[0]);
        return 2;
    }
    char *src = slurp(argc - 2, argv + 2);
    cl_platform_id plats[8];
    cl_uint np = 0;
    cl_device_id dev = NULL;
    clGetPlatformIDs(8, plats, &np);
    for (cl_uint i = 0; i < np && !dev; i++)
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) != CL_SUCCESS)
            dev = NULL;
    if (!src || !dev) {
        fprintf(stderr, "no sources or no GPU\n");
        return 1;
    }
    cl_int err;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    need(err, "clCreateContext");
    cl_command_queue q = clCreateCommandQueue(ctx, dev, CL_QUEUE_PROFILING_ENABLE, &err);
    need(err, "clCreateCommandQueue");
    cl_program p = clCreateProgramWithSource(ctx, 1, (const char **)&src, NULL, &err);
    need(err, "clCreateProgramWithSource");
    if (clBuildProgram(p, 1, &dev, argv[1], NULL, NULL) != CL_SUCCESS) {
        char log[16384];
        clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
        fprintf(stderr, "build failed:\n%s\n", log);
        return 1;
    }
    static const struct { const char *name; int n, k; } shapes[] = {
        {"down 2048 x 8192", 2048, 8192}, {"gate+up 16384 x 2048", 16384, 2048},
        {"wo 2048 x 2048", 2048, 2048}, {"LM head 128256 x 2048", 128256, 2048}};
    static const char *const kernels[] = {"p_skinny", "p_rows", "p_stage"};
    cl_mem out = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 64, NULL, &err);
    need(err, "clCreateBuffer");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int n = shapes[si].n, k = shapes[si].k;
        const int sb = ((k / 32) * 2 + 15) & ~15;
        const cl_ulong rb = (cl_ulong)sb + (cl_ulong)k;
        const size_t bytes = (size_t)n * rb;
        cl_mem w = clCreateBuffer(ctx, CL_MEM_READ_ONLY, bytes, NULL, &err);
        need(err, "clCreateBuffer");
        unsigned char pat = 0x5A;
        need(clEnqueueFillBuffer(q, w, &pat, 1, 0, bytes, 0, NULL, NULL), "clEnqueueFillBuffer");
        printf("%s (%.1f MB):", shapes[si].name, bytes / 1e6);
        for (size_t ki = 0; ki < sizeof kernels / sizeof kernels[0]; ki++) {
            cl_kernel kk = clCreateKernel(p, kernels[ki], &err);
            need(err, kernels[ki]);
            need(clSetKernelArg(kk, 0, sizeof w, &w), "clSetKernelArg");
            need(clSetKernelArg(kk, 1, sizeof rb, &rb), "clSetKernelArg");
            need(clSetKernelArg(kk, 2, sizeof sb, &sb), "clSetKernelArg");
            need(clSetKernelArg(kk, 3, sizeof k, &k), "clSetKernelArg");
            need(clSetKernelArg(kk, 4, sizeof out, &out), "clSetKernelArg");
            size_t global = (size_t)(n / 16) * 256, local = 256;
            double t[20];
            for (int r = 0; r < 22; r++) {
                const double s = timed_launch(q, kk, global, local, kernels[ki]);
                if (r >= 2)
                    t[r - 2] = s;
            }
            qsort(t, 20, sizeof t[0], cmp_d);
            printf("  %s %.1f us %.0f GB/s", kernels[ki], t[10] * 1e6, bytes / t[10] / 1e9);
            clReleaseKernel(kk);
        }
        printf("\n");
        clReleaseMemObject(w);
    }
    return 0;
}
