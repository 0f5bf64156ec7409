/* cl_regs.c - print NVIDIA's ptxas report (registers, spills, shared
 * memory per kernel) for builds of kernels/ sources, on the GPU machine:
 *   cc -o /tmp/cl_regs bench/cl_regs.c -lOpenCL
 *   /tmp/cl_regs "OPTIONS" FILE.cl [FILE.cl ...]
 * The files are concatenated in order as qeval's engine does; OPTIONS are
 * the build's -D flags (-cl-nv-verbose is added). With CL_REGS_PTX=FILE in
 * the environment the program's binary (NVIDIA's: the PTX its driver
 * compiles) is written to FILE too, for bench/ptx_run.c. A development aid
 * for bench/gpu_profile.sh's breakdowns, not part of qeval. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s OPTIONS FILE.cl...\n", argv[0]);
        return 2;
    }
    size_t total = 0;
    char *src = NULL;
    for (int i = 2; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        src = realloc(src, total + (size_t)n + 2);
        if (!src || fread(src + total, 1, (size_t)n, f) != (size_t)n)
            return 1;
        total += (size_t)n;
        src[total++] = '\n';
        src[total] = 0;
        fclose(f);
    }
    cl_platform_id plats[8];
    cl_uint np = 0;
    clGetPlatformIDs(8, plats, &np);
    cl_device_id dev = NULL;
    for (cl_uint p = 0; p < np && !dev; p++)
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) != CL_SUCCESS)
            dev = NULL;
    if (!dev) {
        fprintf(stderr, "no GPU\n");
        return 1;
    }
    cl_int err;
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    const char *s = src;
    cl_program prog = clCreateProgramWithSource(ctx, 1, &s, &total, &err);
    char opts[1024];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -cl-nv-verbose %s", argv[1]);
    err = clBuildProgram(prog, 1, &dev, opts, NULL, NULL);
    size_t ln = 0;
    clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &ln);
    char *log = malloc(ln + 1);
    clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, ln, log, NULL);
    log[ln] = 0;
    printf("%s: build %d\n%s\n", opts, err, log);
    const char *ptx = getenv("CL_REGS_PTX");
    if (err == CL_SUCCESS && ptx) {
        size_t n = 0;
        if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL) != CL_SUCCESS)
            return 1;
        unsigned char *bin = malloc(n + 1);
        FILE *f = fopen(ptx, "wb");
        if (!bin || !f ||
            clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS ||
            fwrite(bin, 1, n, f) != n || fclose(f) != 0) {
            fprintf(stderr, "%s: could not write the binary\n", ptx);
            return 1;
        }
    }
    return err != CL_SUCCESS;
}
