/* probe_util.h - what bench/stream_probe.c and bench/limits_probe.c share:
 * reading the kernel sources, failing on an OpenCL error, timing one
 * launch, sorting times.
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

#endif
