/* cluster_probe.c - can an OpenCL program on NVIDIA run as Hopper's
 * thread-block clusters (work-groups that share their local memory)?
 *   cc -O2 -o /tmp/cluster_probe bench/cluster_probe.c -lOpenCL &&
 *       /tmp/cluster_probe kernels/ptx.cl bench/cluster_probe.cl
 * Builds the program from source, takes its PTX, puts the cluster shape
 * (".reqnctapercluster 1, 2, 1", from the "// @CLUSTER 1 2 1" comment) before
 * the entry's body, alone and with ".explicitcluster", loads each back with
 * clCreateProgramWithBinary and launches 4 x 8 work-groups: each form's
 * ranks and sizes as the work-groups saw them, and whether each read its
 * partner's local memory and received its partner's stores (the values
 * say whose). Session 25 (H100, driver 580.159.04): all three forms build
 * and run, every work-group alone (size 1), so an OpenCL launch does not
 * form clusters, and a shared weight tile between two mma_tile
 * work-groups (README, "Session 25") cannot run through qeval. A
 * development aid, not part of qeval. */
#define CL_TARGET_OPENCL_VERSION 120
#include "probe_util.h"

/* ptx with `directive` inserted before the body of the entry holding the
 * @CLUSTER comment (the first "{" line after the last ".entry" before it) */
static char *with_directive(const char *ptx, const char *directive)
{
    const char *mk = strstr(ptx, "// @CLUSTER");
    if (!mk)
        return NULL;
    const char *entry = NULL;
    for (const char *p = strstr(ptx, ".entry"); p && p < mk; p = strstr(p + 1, ".entry"))
        entry = p;
    const char *body = entry ? strstr(entry, "\n{") : NULL;
    if (!body || body > mk)
        return NULL;
    body++;
    const size_t head = (size_t)(body - ptx), dl = strlen(directive);
    char *out = malloc(strlen(ptx) + dl + 1);
    memcpy(out, ptx, head);
    memcpy(out + head, directive, dl);
    strcpy(out + head + dl, body);
    return out;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s kernels/ptx.cl bench/cluster_probe.cl\n",
                argv[0]);
        return 2;
    }
    cl_context ctx;
    cl_command_queue q;
    cl_device_id dev;
    char *ptx = probe_open_ptx(argc - 1, argv + 1, &ctx, &q, &dev);
    if (!ptx)
        return 2;
    cl_int err;
    struct {
        const char *what, *directive;
    } forms[] = {{"(1) as compiled (no directive)", ""},
                 {"(2) .reqnctapercluster 1, 2, 1", ".reqnctapercluster 1, 2, 1\n"},
                 {"(3) .explicitcluster + .reqnctapercluster 1, 2, 1",
                  ".explicitcluster\n.reqnctapercluster 1, 2, 1\n"}};
    enum { GX = 4, GY = 8, NG = GX * GY };
    cl_mem info = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 4 * NG * sizeof(cl_uint), NULL, &err);
    need(err, "info");
    cl_mem got = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 128 * NG * sizeof(cl_uint), NULL, &err);
    need(err, "got");
    cl_mem pushed = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 128 * NG * sizeof(cl_uint), NULL, &err);
    need(err, "pushed");
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        char *p_ptx = with_directive(ptx, forms[f].directive);
        if (!p_ptx) {
            printf("%s: no @CLUSTER comment in an entry's body\n", forms[f].what);
            continue;
        }
        size_t len = strlen(p_ptx);
        const unsigned char *bin = (const unsigned char *)p_ptx;
        cl_int bs = 0;
        cl_program p = clCreateProgramWithBinary(ctx, 1, &dev, &len, &bin, &bs, &err);
        if (err == CL_SUCCESS)
            err = clBuildProgram(p, 1, &dev, "", NULL, NULL);
        if (err != CL_SUCCESS) {
            char log[4096] = {0};
            clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
            printf("%s: does not build (%d): %.600s\n", forms[f].what, (int)err, log);
            continue;
        }
        cl_kernel k = clCreateKernel(p, "cluster_probe", &err);
        need(err, "clCreateKernel");
        need(clSetKernelArg(k, 0, sizeof info, &info), "arg");
        need(clSetKernelArg(k, 1, sizeof got, &got), "arg");
        need(clSetKernelArg(k, 2, sizeof pushed, &pushed), "arg");
        static cl_uint hi[4 * NG], hg[128 * NG], hp[128 * NG];
        memset(hi, 0xFF, sizeof hi);
        memset(hg, 0xFF, sizeof hg);
        memset(hp, 0xFF, sizeof hp);
        need(clEnqueueWriteBuffer(q, info, CL_TRUE, 0, sizeof hi, hi, 0, NULL, NULL), "w");
        need(clEnqueueWriteBuffer(q, got, CL_TRUE, 0, sizeof hg, hg, 0, NULL, NULL), "w");
        need(clEnqueueWriteBuffer(q, pushed, CL_TRUE, 0, sizeof hp, hp, 0, NULL, NULL), "w");
        size_t g[2] = {128 * GX, GY}, l[2] = {128, 1};
        err = clEnqueueNDRangeKernel(q, k, 2, NULL, g, l, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clFinish(q);
        if (err != CL_SUCCESS) {
            printf("%s: built, the launch failed (%d)\n", forms[f].what, (int)err);
            clReleaseKernel(k);
            clReleaseProgram(p);
            continue;
        }
        need(clEnqueueReadBuffer(q, info, CL_TRUE, 0, sizeof hi, hi, 0, NULL, NULL), "r");
        need(clEnqueueReadBuffer(q, got, CL_TRUE, 0, sizeof hg, hg, 0, NULL, NULL), "r");
        need(clEnqueueReadBuffer(q, pushed, CL_TRUE, 0, sizeof hp, hp, 0, NULL, NULL), "r");
        int ranks_ok = 0, size2 = 0, got_ok = 0, pushed_ok = 0;
        for (int gi = 0; gi < NG; gi++) {
            const int y = gi / GX, x = gi % GX, peer = (y ^ 1) * GX + x;
            ranks_ok += hi[4 * gi] == (cl_uint)(y & 1) && hi[4 * gi + 3] == 0xC0FFEEu;
            size2 += hi[4 * gi + 1] == 2;
            int gok = 1, pok = 1;
            for (int t = 0; t < 128; t++) {
                gok &= hg[128 * gi + t] == (cl_uint)peer * 1000u + (cl_uint)t;
                pok &= hp[128 * gi + t] == (cl_uint)peer * 1000u + (cl_uint)t;
            }
            got_ok += gok;
            pushed_ok += pok;
        }
        printf("%s: of %d work-groups, %d saw rank = y %% 2, %d a cluster of 2 (group 0: rank "
               "%u size %u; group %d: rank %u size %u); %d read their partner's local memory, %d "
               "received its stores\n",
               forms[f].what, NG, ranks_ok, size2, hi[0], hi[1], GX, hi[4 * GX], hi[4 * GX + 1],
               got_ok, pushed_ok);
        clReleaseKernel(k);
        clReleaseProgram(p);
        free(p_ptx);
    }
    return 0;
}
