/* probe_util.h - what the GPU probes in bench/ share: reading the
 * kernel sources, failing on an OpenCL error, timing one launch, sorting
 * times, opening the GPU and a program's PTX.
 * Development aids, not part of qeval; a header of static functions so that
 * each probe still builds with one cc command. */
#ifndef QE_BENCH_PROBE_UTIL_H
#define QE_BENCH_PROBE_UTIL_H
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(int n, char **files)
{
    size_t total = 0;
    char *src = NULL;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "rb");
        if (!f)
            return NULL;
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        src = realloc(src, total + (size_t)len + 2);
        if (!src || fread(src + total, 1, (size_t)len, f) != (size_t)len)
            return NULL;
        total += (size_t)len;
        src[total++] = '\n';
        src[total] = 0;
        fclose(f);
    }
    return src;
}

/* A failed OpenCL call ends the probe: a time from a failed launch would
 * be a number that measures nothing. */
static void need(cl_int err, const char *what)
{
    if (err != CL_SUCCESS) {
        fprintf(stderr, "%s failed: OpenCL error %d\n", what, (int)err);
        exit(1);
    }
}

/* One launch of k over g work-items in groups of l on q (a profiling
 * queue): its device time in seconds, from its event. */
static double timed_launch(cl_command_queue q, cl_kernel k, size_t g, size_t l, const char *what)
{
    cl_event e;
    cl_ulong s = 0, f = 0;
    need(clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &l, 0, NULL, &e), what);
    need(clWaitForEvents(1, &e), what);
    need(clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_START, sizeof s, &s, NULL), what);
    need(clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_END, sizeof f, &f, NULL), what);
    clReleaseEvent(e);
    return 1e-9 * (double)(f - s);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The first GPU of any platform (the probe ends if there is none), its
 * name and driver printed, a context on it into *ctx and an in-order
 * queue into *q. */
static cl_device_id probe_gpu(cl_context *ctx, cl_command_queue *q)
{
    cl_platform_id plats[8];
    cl_uint np = 0;
    need(clGetPlatformIDs(8, plats, &np), "clGetPlatformIDs");
    cl_device_id dev = NULL;
    for (cl_uint i = 0; i < np && !dev; i++)
        if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) != CL_SUCCESS)
            dev = NULL;
    if (!dev) {
        fprintf(stderr, "no GPU\n");
        exit(1);
    }
    char name[256], drv[64];
    clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL);
    clGetDeviceInfo(dev, CL_DRIVER_VERSION, sizeof drv, drv, NULL);
    printf("device: %s, driver %s\n", name, drv);
    cl_int err;
    *ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    need(err, "clCreateContext");
#if CL_TARGET_OPENCL_VERSION >= 200 /* limits_probe: OpenCL 3.0 headers */
    *q = clCreateCommandQueueWithProperties(*ctx, dev, NULL, &err);
#else
    *q = clCreateCommandQueue(*ctx, dev, 0, &err);
#endif
    need(err, "clCreateCommandQueue");
    return dev;
}

/* src built from source for dev (OpenCL C 1.2), and the program's binary,
 * which NVIDIA's driver makes PTX, returned NUL-terminated (malloc'd) with
 * its .version and .target printed; a build that fails ends the probe with
 * the head of its log. */
static char *probe_source_ptx(cl_context ctx, cl_device_id dev, const char *src)
{
    cl_int err;
    cl_program prog = clCreateProgramWithSource(ctx, 1, &src, NULL, &err);
    need(err, "clCreateProgramWithSource");
    if (clBuildProgram(prog, 1, &dev, "-cl-std=CL1.2", NULL, NULL) != CL_SUCCESS) {
        char log[4096] = {0};
        clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        fprintf(stderr, "the source does not build: %.1500s\n", log);
        exit(1);
    }
    size_t bl = 0;
    need(clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof bl, &bl, NULL), "binary size");
    char *ptx = calloc(1, bl + 1);
    if (!ptx)
        exit(1);
    char *bins[1] = {ptx};
    need(clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL), "binary");
    clReleaseProgram(prog);
    const char *ver = strstr(ptx, ".version"), *tgt = strstr(ptx, ".target");
    printf("compiled PTX: %.*s, %.*s\n", ver ? (int)strcspn(ver, "\n") : 0, ver ? ver : "",
           tgt ? (int)strcspn(tgt, "\n") : 0, tgt ? tgt : "");
    return ptx;
}

/* A PTX probe's start: the files named concatenated (slurp), the first GPU
 * with a context and queue (probe_gpu) into *ctx, *q, *dev, and the
 * program's PTX (probe_source_ptx); NULL when a file cannot be read. */
static char *probe_open_ptx(int n, char **files, cl_context *ctx, cl_command_queue *q,
                            cl_device_id *dev)
{
    char *src = slurp(n, files);
    if (!src)
        return NULL;
    *dev = probe_gpu(ctx, q);
    char *ptx = probe_source_ptx(*ctx, *dev, src);
    free(src);
    return ptx;
}

#endif
