/* cl.c - OpenCL devices, context and queue, buffers, kernels, events.
 *
 * The thin layer of lib/cl.h: every wrapper turns a cl_int into qe_status
 * plus a message naming the call and the error. Program building and the
 * binary cache live in build.c, capability probes in probe.c.
 *
 * Threading: listing and selection touch no shared state. A qe_cl handle is
 * used by one thread at a time (see cl.h).
 */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* ---- error names ---- */

static const struct {
    cl_int code;
    const char *name;
} cl_errors[] = {
    {0, "CL_SUCCESS"},
    {-1, "CL_DEVICE_NOT_FOUND"},
    {-2, "CL_DEVICE_NOT_AVAILABLE"},
    {-3, "CL_COMPILER_NOT_AVAILABLE"},
    {-4, "CL_MEM_OBJECT_ALLOCATION_FAILURE"},
    {-5, "CL_OUT_OF_RESOURCES"},
    {-6, "CL_OUT_OF_HOST_MEMORY"},
    {-7, "CL_PROFILING_INFO_NOT_AVAILABLE"},
    {-8, "CL_MEM_COPY_OVERLAP"},
    {-9, "CL_IMAGE_FORMAT_MISMATCH"},
    {-10, "CL_IMAGE_FORMAT_NOT_SUPPORTED"},
    {-11, "CL_BUILD_PROGRAM_FAILURE"},
    {-12, "CL_MAP_FAILURE"},
    {-13, "CL_MISALIGNED_SUB_BUFFER_OFFSET"},
    {-14, "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST"},
    {-15, "CL_COMPILE_PROGRAM_FAILURE"},
    {-16, "CL_LINKER_NOT_AVAILABLE"},
    {-17, "CL_LINK_PROGRAM_FAILURE"},
    {-18, "CL_DEVICE_PARTITION_FAILED"},
    {-19, "CL_KERNEL_ARG_INFO_NOT_AVAILABLE"},
    {-30, "CL_INVALID_VALUE"},
    {-31, "CL_INVALID_DEVICE_TYPE"},
    {-32, "CL_INVALID_PLATFORM"},
    {-33, "CL_INVALID_DEVICE"},
    {-34, "CL_INVALID_CONTEXT"},
    {-35, "CL_INVALID_QUEUE_PROPERTIES"},
    {-36, "CL_INVALID_COMMAND_QUEUE"},
    {-37, "CL_INVALID_HOST_PTR"},
    {-38, "CL_INVALID_MEM_OBJECT"},
    {-39, "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR"},
    {-40, "CL_INVALID_IMAGE_SIZE"},
    {-41, "CL_INVALID_SAMPLER"},
    {-42, "CL_INVALID_BINARY"},
    {-43, "CL_INVALID_BUILD_OPTIONS"},
    {-44, "CL_INVALID_PROGRAM"},
    {-45, "CL_INVALID_PROGRAM_EXECUTABLE"},
    {-46, "CL_INVALID_KERNEL_NAME"},
    {-47, "CL_INVALID_KERNEL_DEFINITION"},
    {-48, "CL_INVALID_KERNEL"},
    {-49, "CL_INVALID_ARG_INDEX"},
    {-50, "CL_INVALID_ARG_VALUE"},
    {-51, "CL_INVALID_ARG_SIZE"},
    {-52, "CL_INVALID_KERNEL_ARGS"},
    {-53, "CL_INVALID_WORK_DIMENSION"},
    {-54, "CL_INVALID_WORK_GROUP_SIZE"},
    {-55, "CL_INVALID_WORK_ITEM_SIZE"},
    {-56, "CL_INVALID_GLOBAL_OFFSET"},
    {-57, "CL_INVALID_EVENT_WAIT_LIST"},
    {-58, "CL_INVALID_EVENT"},
    {-59, "CL_INVALID_OPERATION"},
    {-60, "CL_INVALID_GL_OBJECT"},
    {-61, "CL_INVALID_BUFFER_SIZE"},
    {-62, "CL_INVALID_MIP_LEVEL"},
    {-63, "CL_INVALID_GLOBAL_WORK_SIZE"},
    {-64, "CL_INVALID_PROPERTY"},
    {-65, "CL_INVALID_IMAGE_DESCRIPTOR"},
    {-66, "CL_INVALID_COMPILER_OPTIONS"},
    {-67, "CL_INVALID_LINKER_OPTIONS"},
    {-68, "CL_INVALID_DEVICE_PARTITION_COUNT"},
    {-69, "CL_INVALID_PIPE_SIZE"},
    {-70, "CL_INVALID_DEVICE_QUEUE"},
    {-71, "CL_INVALID_SPEC_ID"},
    {-72, "CL_MAX_SIZE_RESTRICTION_EXCEEDED"},
    {-1000, "CL_INVALID_GL_SHAREGROUP_REFERENCE_KHR"},
    {-1001, "CL_PLATFORM_NOT_FOUND_KHR"},
    {-1002, "CL_INVALID_D3D10_DEVICE_KHR"},
    {-1003, "CL_INVALID_D3D10_RESOURCE_KHR"},
    {-1004, "CL_D3D10_RESOURCE_ALREADY_ACQUIRED_KHR"},
    {-1005, "CL_D3D10_RESOURCE_NOT_ACQUIRED_KHR"},
    {-1057, "CL_DEVICE_PARTITION_FAILED_EXT"},
    {-1058, "CL_INVALID_PARTITION_COUNT_EXT"},
    {-1059, "CL_INVALID_PARTITION_NAME_EXT"},
    {-1092, "CL_EGL_RESOURCE_NOT_ACQUIRED_KHR"},
    {-1093, "CL_INVALID_EGL_OBJECT_KHR"},
    {-1094, "CL_INVALID_ACCELERATOR_INTEL"},
    {-1095, "CL_INVALID_ACCELERATOR_TYPE_INTEL"},
    {-1096, "CL_INVALID_ACCELERATOR_DESCRIPTOR_INTEL"},
    {-1097, "CL_ACCELERATOR_TYPE_NOT_SUPPORTED_INTEL"},
    {-1098, "CL_INVALID_VA_API_MEDIA_ADAPTER_INTEL"},
    {-1099, "CL_INVALID_VA_API_MEDIA_SURFACE_INTEL"},
    {-1100, "CL_VA_API_MEDIA_SURFACE_ALREADY_ACQUIRED_INTEL"},
    {-1101, "CL_VA_API_MEDIA_SURFACE_NOT_ACQUIRED_INTEL"},
    {-1121, "CL_CONTEXT_TERMINATED_KHR"},
    {-1138, "CL_INVALID_COMMAND_BUFFER_KHR"},
    {-1139, "CL_INVALID_SYNC_POINT_WAIT_LIST_KHR"},
    {-1140, "CL_INCOMPATIBLE_COMMAND_QUEUE_KHR"},
    {-1141, "CL_INVALID_MUTABLE_COMMAND_KHR"},
    {-1142, "CL_INVALID_SEMAPHORE_KHR"},
};

const char *qe_cl_errstr(cl_int err)
{
    for (size_t i = 0; i < sizeof cl_errors / sizeof cl_errors[0]; i++)
        if (cl_errors[i].code == err)
            return cl_errors[i].name;
    return "CL_UNKNOWN_ERROR";
}

qe_status qe_cl_fail_call(const char *call, const char *what, cl_int err)
{
    qe_log_debug("%s(%s): %s (%d)", call, what ? what : "", qe_cl_errstr(err), (int)err);
    return qe_fail(QE_ECL, "%s(%s): %s", call, what ? what : "", qe_cl_errstr(err));
}

/* ---- device listing ---- */

/* Copy a driver string into dst (size n): truncated, control characters
 * replaced, trailing blanks trimmed, so tables and messages stay one line. */
static void clean_copy(char *dst, size_t n, const char *src, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < len && src[i] && j + 1 < n; i++)
        dst[j++] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
    while (j > 0 && dst[j - 1] == ' ')
        j--;
    dst[j] = '\0';
}

/* A string property of a platform (dev == NULL) or a device, malloc'ed into
 * *out; "" when the driver gives nothing. */
static qe_status info_str(cl_platform_id plat, cl_device_id dev, cl_uint param, char **out)
{
    size_t len = 0;
    cl_int err = dev ? clGetDeviceInfo(dev, param, 0, NULL, &len)
                     : clGetPlatformInfo(plat, param, 0, NULL, &len);
    if (err != CL_SUCCESS)
        return qe_cl_fail_call(dev ? "clGetDeviceInfo" : "clGetPlatformInfo", NULL, err);
    char *s = malloc(len + 1);
    if (!s)
        return qe_fail(QE_ENOMEM, "out of memory reading an OpenCL info string");
    err = dev ? clGetDeviceInfo(dev, param, len, s, NULL)
              : clGetPlatformInfo(plat, param, len, s, NULL);
    if (err != CL_SUCCESS) {
        free(s);
        return qe_cl_fail_call(dev ? "clGetDeviceInfo" : "clGetPlatformInfo", NULL, err);
    }
    s[len] = '\0';
    *out = s;
    return QE_OK;
}

static qe_status info_fixed(cl_platform_id plat, cl_device_id dev, cl_uint param, char *dst,
                            size_t n)
{
    char *s = NULL;
    qe_status st = info_str(plat, dev, param, &s);
    if (st == QE_OK)
        clean_copy(dst, n, s, strlen(s));
    free(s);
    return st;
}

static qe_status info_val(cl_device_id dev, cl_uint param, void *dst, size_t size)
{
    cl_int err = clGetDeviceInfo(dev, param, size, dst, NULL);
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clGetDeviceInfo", NULL, err);
}

static const char *type_name(cl_device_type t)
{
    if (t & CL_DEVICE_TYPE_GPU)
        return "GPU";
    if (t & CL_DEVICE_TYPE_CPU)
        return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR)
        return "ACCELERATOR";
    return "OTHER";
}

static qe_status fill_device(cl_platform_id plat, cl_device_id dev, qe_cl_device_info *d)
{
    qe_status st;
    cl_ulong u64;
    cl_uint u32;
    d->platform = plat;
    d->device = dev;
    if ((st = info_fixed(plat, NULL, CL_PLATFORM_NAME, d->platform_name, sizeof d->platform_name)) ||
        (st = info_fixed(plat, NULL, CL_PLATFORM_VENDOR, d->platform_vendor, sizeof d->platform_vendor)) ||
        (st = info_fixed(plat, NULL, CL_PLATFORM_VERSION, d->platform_version, sizeof d->platform_version)) ||
        (st = info_fixed(plat, dev, CL_DEVICE_NAME, d->name, sizeof d->name)) ||
        (st = info_fixed(plat, dev, CL_DEVICE_VENDOR, d->vendor, sizeof d->vendor)) ||
        (st = info_fixed(plat, dev, CL_DRIVER_VERSION, d->driver_version, sizeof d->driver_version)) ||
        (st = info_fixed(plat, dev, CL_DEVICE_VERSION, d->device_version, sizeof d->device_version)) ||
        (st = info_fixed(plat, dev, CL_DEVICE_OPENCL_C_VERSION, d->c_version, sizeof d->c_version)) ||
        (st = info_str(plat, dev, CL_DEVICE_EXTENSIONS, &d->extensions)))
        return st;
    for (char *p = d->extensions; *p; p++) /* one line, like the other strings */
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    if ((st = info_val(dev, CL_DEVICE_TYPE, &d->type, sizeof d->type)))
        return st;
    d->type_str = type_name(d->type);
    if ((st = info_val(dev, CL_DEVICE_VENDOR_ID, &u32, sizeof u32)))
        return st;
    d->vendor_id = u32;
    if ((st = info_val(dev, CL_DEVICE_GLOBAL_MEM_SIZE, &u64, sizeof u64)))
        return st;
    d->global_mem = u64;
    if ((st = info_val(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, &u64, sizeof u64)))
        return st;
    d->max_alloc = u64;
    if ((st = info_val(dev, CL_DEVICE_LOCAL_MEM_SIZE, &u64, sizeof u64)))
        return st;
    d->local_mem = u64;
    if ((st = info_val(dev, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, &u64, sizeof u64)))
        return st;
    d->global_cache = u64;
    if ((st = info_val(dev, CL_DEVICE_MAX_COMPUTE_UNITS, &u32, sizeof u32)))
        return st;
    d->compute_units = u32;
    if ((st = info_val(dev, CL_DEVICE_MAX_CLOCK_FREQUENCY, &u32, sizeof u32)))
        return st;
    d->clock_mhz = u32;
    /* Reported in bits. */
    if ((st = info_val(dev, CL_DEVICE_MEM_BASE_ADDR_ALIGN, &u32, sizeof u32)))
        return st;
    d->mem_base_align = u32 / 8 ? u32 / 8 : 1;
    if ((st = info_val(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, &d->max_wg_size, sizeof d->max_wg_size)))
        return st;
    size_t wi[3] = {1, 1, 1};
    if ((st = info_val(dev, CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS, &u32, sizeof u32)))
        return st;
    if (u32 >= 3 && (st = info_val(dev, CL_DEVICE_MAX_WORK_ITEM_SIZES, wi, sizeof wi)))
        return st;
    memcpy(d->max_wi_sizes, wi, sizeof wi);
    cl_device_fp_config fp = 0;
    if ((st = info_val(dev, CL_DEVICE_SINGLE_FP_CONFIG, &fp, sizeof fp)))
        return st;
    d->fp32_div_rn = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    return QE_OK;
}

void qe_cl_list_free(qe_cl_device_info *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i].extensions);
    free(list);
}

qe_status qe_cl_list(qe_cl_device_info **out, size_t *n_out)
{
    qe_status st = QE_OK;
    cl_platform_id *plats = NULL;
    cl_device_id *devs = NULL;
    qe_cl_device_info *list = NULL;
    size_t n = 0;
    cl_uint np = 0;
    *out = NULL;
    *n_out = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR: the ICD loader found no ICD */ || (err == CL_SUCCESS && np == 0)) {
        st = qe_fail(QE_ENOTFOUND, "no OpenCL platform found (is an ICD registered under "
                                   "/etc/OpenCL/vendors/?)");
        goto done;
    }
    if (err != CL_SUCCESS) {
        st = qe_cl_fail_call("clGetPlatformIDs", NULL, err);
        goto done;
    }
    plats = calloc(np, sizeof *plats);
    if (!plats) {
        st = qe_fail(QE_ENOMEM, "out of memory listing OpenCL platforms");
        goto done;
    }
    if ((err = clGetPlatformIDs(np, plats, &np)) != CL_SUCCESS) {
        st = qe_cl_fail_call("clGetPlatformIDs", NULL, err);
        goto done;
    }
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd);
        if (err != CL_SUCCESS || nd == 0) {
            qe_log_debug("OpenCL platform %u: no devices (%s)", p, qe_cl_errstr(err));
            continue;
        }
        free(devs);
        devs = calloc(nd, sizeof *devs);
        qe_cl_device_info *grown = realloc(list, (n + nd) * sizeof *list);
        if (!devs || !grown) {
            if (grown)
                list = grown;
            st = qe_fail(QE_ENOMEM, "out of memory listing OpenCL devices");
            goto done;
        }
        list = grown;
        if ((err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, devs, &nd)) != CL_SUCCESS) {
            qe_log_debug("OpenCL platform %u: clGetDeviceIDs: %s", p, qe_cl_errstr(err));
            continue;
        }
        for (cl_uint d = 0; d < nd; d++) {
            qe_cl_device_info *e = &list[n];
            memset(e, 0, sizeof *e);
            if (fill_device(plats[p], devs[d], e) != QE_OK) {
                qe_log_debug("OpenCL platform %u device %u skipped: %s", p, d, qe_errmsg());
                free(e->extensions);
                continue;
            }
            e->index = (int)n;
            e->platform_index = (int)p;
            e->device_index = (int)d;
            n++;
        }
    }
    qe_errclear();
    *out = list;
    *n_out = n;
    list = NULL;
    if (n == 0)
        qe_log_debug("OpenCL: %u platform(s), no usable device", np);
done:
    qe_cl_list_free(list, n);
    free(devs);
    free(plats);
    return st;
}

int qe_cl_has_extension(const qe_cl_device_info *info, const char *ext)
{
    size_t len = strlen(ext);
    if (!info || !info->extensions || len == 0)
        return 0;
    for (const char *p = info->extensions; (p = strstr(p, ext)) != NULL; p += len) {
        int starts = p == info->extensions || p[-1] == ' ';
        int ends = p[len] == '\0' || p[len] == ' ';
        if (starts && ends)
            return 1;
    }
    return 0;
}

/* ---- device selection ---- */

static int icontains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

static int ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return 0;
    return *a == *b;
}

/* "0: PLATFORM / DEVICE (TYPE); 1: ..." for error messages. */
static void describe_all(const qe_cl_device_info *list, size_t n, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used + 1 < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%zu: %s / %s (%s)", i ? "; " : "", i,
                         list[i].platform_name, list[i].name, list[i].type_str);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

qe_status qe_cl_select(const qe_cl_device_info *list, size_t n, const char *choice,
                       size_t *index)
{
    const char *from = "--device";
    if (!choice || !*choice) {
        choice = getenv("QEVAL_DEVICE");
        from = "QEVAL_DEVICE";
    }
    if (n == 0)
        return qe_fail(QE_ENOTFOUND, "no OpenCL device found");
    if (!choice || !*choice) {
        static const cl_device_type prefs[] = {CL_DEVICE_TYPE_GPU, CL_DEVICE_TYPE_CPU};
        for (size_t k = 0; k < 2; k++)
            for (size_t i = 0; i < n; i++)
                if (list[i].type & prefs[k]) {
                    *index = i;
                    return QE_OK;
                }
        *index = 0;
        return QE_OK;
    }
    char all[768];
    describe_all(list, n, all, sizeof all);
    size_t digits = strspn(choice, "0123456789");
    if (digits == strlen(choice)) {
        unsigned long long v = digits <= 6 ? strtoull(choice, NULL, 10) : ~0ull;
        if (v >= n)
            return qe_fail(QE_ENOTFOUND, "%s '%s': no device with that index; devices: %s",
                           from, choice, all);
        *index = (size_t)v;
        return QE_OK;
    }
    static const struct {
        const char *word;
        cl_device_type type;
    } kinds[] = {{"gpu", CL_DEVICE_TYPE_GPU}, {"cpu", CL_DEVICE_TYPE_CPU},
                 {"accelerator", CL_DEVICE_TYPE_ACCELERATOR}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        if (!ieq(choice, kinds[k].word))
            continue;
        for (size_t i = 0; i < n; i++)
            if (list[i].type & kinds[k].type) {
                *index = i;
                return QE_OK;
            }
        return qe_fail(QE_ENOTFOUND, "%s '%s': no device of that type; devices: %s", from,
                       choice, all);
    }
    for (size_t i = 0; i < n; i++)
        if (icontains(list[i].platform_name, choice) || icontains(list[i].name, choice)) {
            *index = i;
            return QE_OK;
        }
    return qe_fail(QE_ENOTFOUND, "%s '%s' matches no OpenCL device; devices: %s", from, choice,
                   all);
}

/* ---- context and queue ---- */

qe_status qe_cl_open(const char *choice, unsigned flags, qe_cl **out)
{
    qe_status st;
    qe_cl_device_info *list = NULL;
    size_t n = 0, idx = 0;
    qe_cl *cl = NULL;
    cl_int err;
    *out = NULL;
    if ((st = qe_cl_list(&list, &n)) || (st = qe_cl_select(list, n, choice, &idx)))
        goto done;
    cl = calloc(1, sizeof *cl);
    if (!cl) {
        st = qe_fail(QE_ENOMEM, "out of memory opening an OpenCL device");
        goto done;
    }
    cl->info = list[idx];
    list[idx].extensions = NULL; /* moved into cl */
    cl->flags = flags;
    const char *shapes = getenv("QEVAL_PROFILE_SHAPES");
    cl->prof_shapes = shapes && *shapes && strcmp(shapes, "0");
    const char *trace = getenv("QEVAL_PROFILE_TRACE");
    if ((flags & QE_CL_PROFILE) && trace && *trace && !(cl->prof_trace = fopen(trace, "w"))) {
        st = qe_fail(QE_EIO, "QEVAL_PROFILE_TRACE: cannot write %s: %s", trace, strerror(errno));
        goto done;
    }
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)cl->info.platform, 0};
    cl->ctx = clCreateContext(props, 1, &cl->info.device, NULL, NULL, &err);
    if (!cl->ctx) {
        st = qe_cl_fail_call("clCreateContext", cl->info.name, err);
        goto done;
    }
    cl_command_queue_properties qp = (flags & QE_CL_PROFILE) ? CL_QUEUE_PROFILING_ENABLE : 0;
    cl->queue = clCreateCommandQueue(cl->ctx, cl->info.device, qp, &err);
    if (!cl->queue) {
        st = qe_cl_fail_call("clCreateCommandQueue", cl->info.name, err);
        goto done;
    }
    qe_log_debug("OpenCL: opened device %d: %s / %s (%s)", cl->info.index, cl->info.platform_name,
                 cl->info.name, cl->info.driver_version);
    *out = cl;
    cl = NULL;
done:
    qe_cl_close(cl);
    qe_cl_list_free(list, n);
    return st;
}

void qe_cl_close(qe_cl *cl)
{
    if (!cl)
        return;
    if (cl->side) {
        clFinish(cl->side);
        clReleaseCommandQueue(cl->side);
    }
    if (cl->queue) {
        clFinish(cl->queue);
        clReleaseCommandQueue(cl->queue);
    }
    for (size_t i = 0; i < cl->prof_n; i++)
        clReleaseEvent(cl->prof_ev[i].ev);
    free(cl->prof_ev);
    free(cl->prof_tot);
    if (cl->prof_trace)
        fclose(cl->prof_trace);
    if (cl->ctx)
        clReleaseContext(cl->ctx);
    free(cl->info.extensions);
    free(cl);
}

const qe_cl_device_info *qe_cl_device(const qe_cl *cl) { return &cl->info; }

int qe_cl_profiling(const qe_cl *cl) { return (cl->flags & QE_CL_PROFILE) != 0; }

void qe_cl_launch_stats(const qe_cl *cl, uint64_t *launches, uint64_t *enqueue_ns)
{
    *launches = cl->n_launch;
    *enqueue_ns = cl->enqueue_ns;
}

uint64_t qe_cl_wait_ns(const qe_cl *cl) { return cl->wait_ns; }

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

qe_status qe_cl_finish(qe_cl *cl)
{
    const uint64_t t0 = mono_ns();
    cl_int err = cl->side ? clFinish(cl->side) : CL_SUCCESS;
    if (err == CL_SUCCESS)
        err = clFinish(cl->queue);
    cl->wait_ns += mono_ns() - t0;
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clFinish", NULL, err);
}

qe_status qe_cl_flush(qe_cl *cl)
{
    cl_int err = cl->side ? clFlush(cl->side) : CL_SUCCESS;
    if (err == CL_SUCCESS)
        err = clFlush(cl->queue);
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clFlush", NULL, err);
}

/* ---- buffers ---- */

qe_status qe_cl_alloc(qe_cl *cl, size_t bytes, unsigned flags, const void *init, cl_mem *out)
{
    *out = NULL;
    if (bytes == 0)
        return qe_fail(QE_EINVAL, "OpenCL buffer of 0 bytes requested");
    if ((flags & QE_CL_RO) && (flags & QE_CL_WO))
        return qe_fail(QE_EINVAL, "OpenCL buffer cannot be both read-only and write-only");
    if (bytes > cl->info.max_alloc)
        return qe_fail(QE_ERANGE, "OpenCL buffer of %zu bytes exceeds the largest allocation "
                                  "of %s (%llu bytes)", bytes, cl->info.name,
                       (unsigned long long)cl->info.max_alloc);
    cl_mem_flags mf = (flags & QE_CL_RO)   ? CL_MEM_READ_ONLY
                      : (flags & QE_CL_WO) ? CL_MEM_WRITE_ONLY
                                           : CL_MEM_READ_WRITE;
    cl_int err;
    cl_mem m = clCreateBuffer(cl->ctx, mf, bytes, NULL, &err);
    if (!m) {
        char what[64];
        snprintf(what, sizeof what, "%zu bytes", bytes);
        return qe_cl_fail_call("clCreateBuffer", what, err);
    }
    /* init by a blocking write rather than CL_MEM_COPY_HOST_PTR: NVIDIA's
       OpenCL copied such a buffer to the device only when a kernel first
       used it, so an f16 model's 2.4 GB crossed PCIe inside the first
       prefill (timed as prefill, not upload) */
    if (init) {
        err = clEnqueueWriteBuffer(cl->queue, m, CL_TRUE, 0, bytes, init, 0, NULL, NULL);
        if (err != CL_SUCCESS) {
            clReleaseMemObject(m);
            return qe_cl_fail_call("clEnqueueWriteBuffer", NULL, err);
        }
    }
    *out = m;
    return QE_OK;
}

qe_status qe_cl_sub(qe_cl *cl, cl_mem parent, size_t offset, size_t bytes, cl_mem *out)
{
    *out = NULL;
    size_t size = qe_cl_size(parent);
    if (bytes == 0 || offset > size || bytes > size - offset)
        return qe_fail(QE_ERANGE, "sub-buffer [%zu, +%zu) outside a buffer of %zu bytes", offset,
                       bytes, size);
    if (offset % cl->info.mem_base_align)
        return qe_fail(QE_EINVAL, "sub-buffer offset %zu is not a multiple of %s's alignment "
                                  "(%u bytes)", offset, cl->info.name, cl->info.mem_base_align);
    cl_buffer_region r = {offset, bytes};
    cl_int err;
    cl_mem m = clCreateSubBuffer(parent, 0, CL_BUFFER_CREATE_TYPE_REGION, &r, &err);
    if (!m)
        return qe_cl_fail_call("clCreateSubBuffer", NULL, err);
    *out = m;
    return QE_OK;
}

void qe_cl_free(cl_mem m)
{
    if (m)
        clReleaseMemObject(m);
}

size_t qe_cl_size(cl_mem m)
{
    size_t size = 0;
    if (!m || clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS)
        return 0;
    return size;
}

static qe_status check_range(const char *call, cl_mem m, size_t offset, size_t bytes)
{
    size_t size = qe_cl_size(m);
    if (offset > size || bytes > size - offset)
        return qe_fail(QE_ERANGE, "%s: range [%zu, +%zu) outside a buffer of %zu bytes", call,
                       offset, bytes, size);
    return QE_OK;
}

qe_status qe_cl_write(qe_cl *cl, cl_mem dst, size_t offset, size_t bytes, const void *src,
                      int blocking)
{
    qe_status st = check_range("clEnqueueWriteBuffer", dst, offset, bytes);
    if (st != QE_OK || bytes == 0)
        return st;
    const uint64_t t0 = blocking ? mono_ns() : 0;
    cl_int err = clEnqueueWriteBuffer(cl->queue, dst, blocking ? CL_TRUE : CL_FALSE, offset, bytes,
                                      src, 0, NULL, NULL);
    if (blocking)
        cl->wait_ns += mono_ns() - t0;
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clEnqueueWriteBuffer", NULL, err);
}

qe_status qe_cl_read(qe_cl *cl, cl_mem src, size_t offset, size_t bytes, void *dst)
{
    qe_status st = check_range("clEnqueueReadBuffer", src, offset, bytes);
    if (st != QE_OK || bytes == 0)
        return st;
    const uint64_t t0 = mono_ns();
    cl_int err = clEnqueueReadBuffer(cl->queue, src, CL_TRUE, offset, bytes, dst, 0, NULL, NULL);
    cl->wait_ns += mono_ns() - t0;
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clEnqueueReadBuffer", NULL, err);
}

qe_status qe_cl_fill(qe_cl *cl, cl_mem dst, const void *pattern, size_t pattern_size,
                     size_t offset, size_t bytes)
{
    if (pattern_size == 0 || pattern_size > 128 || (pattern_size & (pattern_size - 1)) ||
        offset % pattern_size || bytes % pattern_size)
        return qe_fail(QE_EINVAL, "fill pattern of %zu bytes: needs a power of two <= 128 that "
                                  "divides offset %zu and size %zu", pattern_size, offset, bytes);
    qe_status st = check_range("clEnqueueFillBuffer", dst, offset, bytes);
    if (st != QE_OK || bytes == 0)
        return st;
    cl_int err = clEnqueueFillBuffer(cl->queue, dst, pattern, pattern_size, offset, bytes, 0, NULL,
                                     NULL);
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clEnqueueFillBuffer", NULL, err);
}

qe_status qe_cl_copy(qe_cl *cl, cl_mem src, size_t src_offset, cl_mem dst, size_t dst_offset,
                     size_t bytes)
{
    qe_status st;
    if ((st = check_range("clEnqueueCopyBuffer", src, src_offset, bytes)) ||
        (st = check_range("clEnqueueCopyBuffer", dst, dst_offset, bytes)) || bytes == 0)
        return st;
    cl_int err = clEnqueueCopyBuffer(cl->queue, src, dst, src_offset, dst_offset, bytes, 0, NULL,
                                     NULL);
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clEnqueueCopyBuffer", NULL, err);
}

/* ---- kernels ---- */

qe_status qe_cl_kernel(cl_program p, const char *name, cl_kernel *out)
{
    cl_int err;
    *out = clCreateKernel(p, name, &err);
    return *out ? QE_OK : qe_cl_fail_call("clCreateKernel", name, err);
}

void qe_cl_kernel_free(cl_kernel k)
{
    if (k)
        clReleaseKernel(k);
}

/* The kernel's function name for messages ("?" if the driver won't say). */
static void kernel_name(cl_kernel k, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    if (clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, n, buf, &len) != CL_SUCCESS || len == 0)
        snprintf(buf, n, "?");
    buf[n - 1] = '\0';
}

qe_status qe_cl_arg(cl_kernel k, cl_uint i, size_t size, const void *value)
{
    cl_int err = clSetKernelArg(k, i, size, value);
    if (err == CL_SUCCESS)
        return QE_OK;
    char name[128], what[160];
    kernel_name(k, name, sizeof name);
    snprintf(what, sizeof what, "%s, arg %u", name, i);
    return qe_cl_fail_call("clSetKernelArg", what, err);
}

qe_status qe_cl_args(cl_kernel k, cl_uint n, ...)
{
    qe_status st = QE_OK;
    va_list ap;
    va_start(ap, n);
    for (cl_uint i = 0; i < n && st == QE_OK; i++) {
        size_t size = va_arg(ap, size_t);
        const void *value = va_arg(ap, const void *);
        st = qe_cl_arg(k, i, size, value);
    }
    va_end(ap);
    return st;
}

qe_status qe_cl_kernel_limits(qe_cl *cl, cl_kernel k, size_t *max_wg, size_t *wg_multiple,
                              uint64_t *local_bytes)
{
    size_t wg = 0, mult = 0;
    cl_ulong lm = 0;
    cl_int err;
    if ((err = clGetKernelWorkGroupInfo(k, cl->info.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg,
                                        &wg, NULL)) != CL_SUCCESS ||
        (err = clGetKernelWorkGroupInfo(k, cl->info.device,
                                        CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE, sizeof mult,
                                        &mult, NULL)) != CL_SUCCESS ||
        (err = clGetKernelWorkGroupInfo(k, cl->info.device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof lm,
                                        &lm, NULL)) != CL_SUCCESS) {
        char name[128];
        kernel_name(k, name, sizeof name);
        return qe_cl_fail_call("clGetKernelWorkGroupInfo", name, err);
    }
    if (max_wg)
        *max_wg = wg;
    if (wg_multiple)
        *wg_multiple = mult;
    if (local_bytes)
        *local_bytes = lm;
    return QE_OK;
}

#define PROF_PENDING_MAX 4096
static qe_status prof_record(qe_cl *cl, cl_kernel k, cl_event ev, cl_uint dims,
                             const size_t *global);
static qe_status prof_fold(qe_cl *cl);

qe_status qe_cl_run(qe_cl *cl, cl_kernel k, cl_uint dims, const size_t *global,
                    const size_t *local, cl_event *ev)
{
    return qe_cl_run_on(cl, QE_CL_MAIN, k, dims, global, local, 0, NULL, ev);
}

/* The queue `queue` names (QE_CL_MAIN or QE_CL_SIDE) into *q, the side
 * queue made on first use (most runs never need it); what fails names
 * `what`. */
static qe_status queue_of(qe_cl *cl, int queue, const char *what, cl_command_queue *q)
{
    if (queue != QE_CL_MAIN && queue != QE_CL_SIDE)
        return qe_fail(QE_EINVAL, "%s: queue %d (QE_CL_MAIN or QE_CL_SIDE allowed)", what, queue);
    if (queue == QE_CL_SIDE && !cl->side) {
        cl_int err;
        cl_command_queue_properties qp =
            (cl->flags & QE_CL_PROFILE) ? CL_QUEUE_PROFILING_ENABLE : 0;
        cl->side = clCreateCommandQueue(cl->ctx, cl->info.device, qp, &err);
        if (!cl->side)
            return qe_cl_fail_call("clCreateCommandQueue", "side queue", err);
    }
    *q = queue == QE_CL_SIDE ? cl->side : cl->queue;
    return QE_OK;
}

/* A wait list's shape: n events need a list (OpenCL's own rule, checked
 * here so the message names the caller). */
static qe_status check_waits(const char *what, cl_uint n_wait, const cl_event *wait)
{
    if ((n_wait > 0) != (wait != NULL))
        return qe_fail(QE_EINVAL, "%s: %u events to wait for and %s list", what, n_wait,
                       wait ? "a" : "no");
    for (cl_uint i = 0; i < n_wait; i++)
        if (!wait[i])
            return qe_fail(QE_EINVAL, "%s: event %u of the wait list is NULL", what, i);
    return QE_OK;
}

/* What qe_cl_barrier and qe_cl_run_on do first: *ev cleared, the wait
 * list checked, the queue into *q; and where the command waits for events,
 * the other queue flushed: OpenCL only promises that a command waiting for
 * another queue's event runs once the commands behind that event have been
 * flushed (clFlush's rule; NVIDIA's and PoCL's drivers submit without it,
 * others may wait forever). */
static qe_status enqueue_prelude(qe_cl *cl, int queue, const char *what, cl_uint n_wait,
                                 const cl_event *wait, cl_event *ev, cl_command_queue *q)
{
    if (ev)
        *ev = NULL;
    qe_status st = check_waits(what, n_wait, wait);
    if (st == QE_OK)
        st = queue_of(cl, queue, what, q);
    cl_command_queue other = queue == QE_CL_MAIN ? cl->side : cl->queue;
    cl_int err = st == QE_OK && n_wait && other ? clFlush(other) : CL_SUCCESS;
    return err == CL_SUCCESS ? st : qe_cl_fail_call("clFlush", what, err);
}

qe_status qe_cl_barrier(qe_cl *cl, int queue, cl_uint n_wait, const cl_event *wait, cl_event *ev)
{
    cl_command_queue q = NULL;
    qe_status st = enqueue_prelude(cl, queue, "barrier", n_wait, wait, ev, &q);
    if (st != QE_OK)
        return st;
    cl_int err = clEnqueueBarrierWithWaitList(q, n_wait, wait, ev);
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clEnqueueBarrierWithWaitList", NULL, err);
}

qe_status qe_cl_run_on(qe_cl *cl, int queue, cl_kernel k, cl_uint dims, const size_t *global,
                       const size_t *local, cl_uint n_wait, const cl_event *wait, cl_event *ev)
{
    char name[128];
    cl_command_queue q = NULL;
    qe_status qs = enqueue_prelude(cl, queue, "kernel launch", n_wait, wait, ev, &q);
    if (qs != QE_OK)
        return qs;
    if (dims < 1 || dims > 3) {
        kernel_name(k, name, sizeof name);
        return qe_fail(QE_EINVAL, "kernel %s: %u dimensions (1 to 3 allowed)", name, dims);
    }
    for (cl_uint d = 0; d < dims; d++) {
        if (global[d] == 0 || (local && (local[d] == 0 || global[d] % local[d]))) {
            kernel_name(k, name, sizeof name);
            return qe_fail(QE_EINVAL, "kernel %s: global size %zu in dimension %u is zero or not "
                                      "a multiple of local size %zu", name, global[d], d,
                           local ? local[d] : 0);
        }
    }
    cl_event own = NULL;
    const int prof = (cl->flags & QE_CL_PROFILE) != 0;
    if (prof && cl->prof_n == PROF_PENDING_MAX) {
        qe_status st = prof_fold(cl);
        if (st != QE_OK)
            return st;
    }
    const uint64_t t0 = mono_ns();
    cl_int err = clEnqueueNDRangeKernel(q, k, dims, NULL, global, local, n_wait, wait,
                                        ev ? ev : prof ? &own : NULL);
    const uint64_t t1 = mono_ns();
    if (err != CL_SUCCESS) {
        kernel_name(k, name, sizeof name);
        return qe_cl_fail_call("clEnqueueNDRangeKernel", name, err);
    }
    cl->n_launch++;
    cl->enqueue_ns += t1 - t0;
    if (prof) {
        if (ev) {
            own = *ev;
            clRetainEvent(own);
        }
        return prof_record(cl, k, own, dims, global);
    }
    return QE_OK;
}

/* ---- per-kernel profile ---- */

/* Keep a launch's event (owned from here on) under its kernel's name; with
 * QEVAL_PROFILE_SHAPES set at open, under name[global sizes], so the
 * launches of one kernel on matrices of different shapes are told apart
 * (which matmul of a layer takes the time). */
static qe_status prof_record(qe_cl *cl, cl_kernel k, cl_event ev, cl_uint dims,
                             const size_t *global)
{
    if (cl->prof_n == cl->prof_cap) {
        size_t cap = cl->prof_cap ? cl->prof_cap * 2 : 256;
        struct qe_cl_prof_pending *p = realloc(cl->prof_ev, cap * sizeof *p);
        if (!p) {
            clReleaseEvent(ev);
            return qe_fail(QE_ENOMEM, "out of memory recording kernel profiles");
        }
        cl->prof_ev = p;
        cl->prof_cap = cap;
    }
    struct qe_cl_prof_pending *p = &cl->prof_ev[cl->prof_n++];
    p->ev = ev;
    kernel_name(k, p->name, sizeof p->name);
    if (cl->prof_shapes) {
        char base[sizeof p->name];
        memcpy(base, p->name, sizeof base);
        const size_t g1 = dims > 1 ? global[1] : 1, g2 = dims > 2 ? global[2] : 1;
        if (dims == 1)
            snprintf(p->name, sizeof p->name, "%.30s[%zu]", base, global[0]);
        else if (dims == 2)
            snprintf(p->name, sizeof p->name, "%.30s[%zu,%zu]", base, global[0], g1);
        else
            snprintf(p->name, sizeof p->name, "%.30s[%zu,%zu,%zu]", base, global[0], g1, g2);
    }
    return QE_OK;
}

/* Wait for the pending launches and add their device times to the totals. */
static qe_status prof_fold(qe_cl *cl)
{
    qe_status st = QE_OK;
    size_t i = 0;
    for (; i < cl->prof_n && st == QE_OK; i++) {
        struct qe_cl_prof_pending *p = &cl->prof_ev[i];
        uint64_t t0 = 0, t1 = 0;
        uint64_t tq = 0;
        st = qe_cl_event_times(p->ev, &tq, &t0, &t1);
        if (st == QE_OK && cl->prof_trace)
            fprintf(cl->prof_trace, "%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n", p->name, tq, t0, t1);
        size_t j = 0;
        while (st == QE_OK && j < cl->prof_nk && strcmp(cl->prof_tot[j].name, p->name))
            j++;
        if (st == QE_OK && j == cl->prof_nk) {
            if (cl->prof_nk == cl->prof_capk) {
                size_t cap = cl->prof_capk ? cl->prof_capk * 2 : 32;
                qe_cl_kernel_time *t = realloc(cl->prof_tot, cap * sizeof *t);
                if (!t) {
                    st = qe_fail(QE_ENOMEM, "out of memory summing kernel profiles");
                    break;
                }
                cl->prof_tot = t;
                cl->prof_capk = cap;
            }
            memset(&cl->prof_tot[j], 0, sizeof cl->prof_tot[j]);
            memcpy(cl->prof_tot[j].name, p->name, sizeof p->name);
            cl->prof_nk++;
        }
        if (st == QE_OK) {
            cl->prof_tot[j].calls++;
            cl->prof_tot[j].ns += t1 > t0 ? t1 - t0 : 0;
        }
    }
    /* Every event is released, summed or not, so a failure leaks nothing. */
    for (size_t k = 0; k < cl->prof_n; k++)
        clReleaseEvent(cl->prof_ev[k].ev);
    cl->prof_n = 0;
    return st;
}

qe_status qe_cl_profile_take(qe_cl *cl, qe_cl_kernel_time **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!(cl->flags & QE_CL_PROFILE))
        return QE_OK;
    qe_status st = prof_fold(cl);
    if (st == QE_OK && cl->prof_nk) {
        *out = cl->prof_tot;
        *n = cl->prof_nk;
        cl->prof_tot = NULL;
        cl->prof_capk = 0;
    }
    cl->prof_nk = 0;
    return st;
}

/* ---- events ---- */

qe_status qe_cl_event_wait(cl_event ev)
{
    cl_int err = clWaitForEvents(1, &ev);
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clWaitForEvents", NULL, err);
}

qe_status qe_cl_event_times(cl_event ev, uint64_t *queued_ns, uint64_t *start_ns,
                            uint64_t *end_ns)
{
    static const cl_profiling_info params[3] = {CL_PROFILING_COMMAND_QUEUED,
                                                CL_PROFILING_COMMAND_START,
                                                CL_PROFILING_COMMAND_END};
    uint64_t *outs[3] = {queued_ns, start_ns, end_ns};
    qe_status st = qe_cl_event_wait(ev);
    for (int i = 0; i < 3 && st == QE_OK; i++) {
        cl_ulong t = 0;
        cl_int err = clGetEventProfilingInfo(ev, params[i], sizeof t, &t, NULL);
        if (err != CL_SUCCESS)
            return qe_cl_fail_call("clGetEventProfilingInfo", NULL, err);
        if (outs[i])
            *outs[i] = t;
    }
    return st;
}

qe_status qe_cl_event_retain(cl_event ev)
{
    cl_int err = ev ? clRetainEvent(ev) : CL_INVALID_EVENT;
    return err == CL_SUCCESS ? QE_OK : qe_cl_fail_call("clRetainEvent", NULL, err);
}

void qe_cl_event_free(cl_event ev)
{
    if (ev)
        clReleaseEvent(ev);
}
