/* cl.h - the one thin layer between qeval and OpenCL.
 *
 * Every cl* call in qeval goes through here. Each wrapper returns qe_status;
 * a failing OpenCL call returns QE_ECL and leaves a message naming the call
 * and the error ("clCreateBuffer(): CL_OUT_OF_RESOURCES"), see qe_errmsg().
 *
 * Works on any OpenCL 1.2+ platform (NVIDIA, AMD, Intel, PoCL). Nothing here
 * assumes a vendor: features are learned by compiling tiny probe kernels
 * (qe_cl_caps), never from version strings.
 *
 * Handles: a qe_cl owns one context and an in-order command queue on one
 * device (and a second one for work that may overlap it: "a second queue").
 * Buffers, programs, kernels and events are the plain OpenCL handles
 * (cl_mem, cl_program, cl_kernel, cl_event): the wrappers below create,
 * use and release them, so callers never call cl* themselves.
 *
 * Device choice (qe_cl_open, qe_cl_select), in order of precedence:
 *   the `choice` argument (the CLI's --device), else $QEVAL_DEVICE, else the
 *   first GPU, else the first CPU, else the first device. A choice is
 *     - all digits: the global index in qe_cl_list()'s order ("0", "1");
 *     - "gpu", "cpu", "accelerator": the first device of that type;
 *     - otherwise a case-insensitive substring of the platform name or the
 *       device name ("nvidia", "pthread", "portable"); first match wins.
 *
 * Kernel sources: kernels/NAME.cl are embedded at build time (kernels.h).
 * With $QEVAL_KERNEL_DIR set, <dir>/NAME.cl is read from disk instead.
 *
 * Program binary cache: a built program's binary is stored under
 *   $QEVAL_CACHE_DIR, else $XDG_CACHE_HOME/qeval, else ~/.cache/qeval,
 * as <first source>-<key>.bin where key = FNV-1a 64 over (cache format
 * version, source names and texts, build options, platform version, device
 * name, device version, driver version). Files are written to a temp file and
 * renamed. Any cache problem falls back to building from source (debug log
 * only). QEVAL_NO_CACHE=1 disables the cache.
 *
 * Threading: qe_cl_list, qe_cl_select, qe_cl_errstr and the cache counters
 * are thread-safe. A qe_cl handle and the objects made from it are used by
 * one thread at a time (the caller serialises); cl_kernel objects must not
 * have their arguments set from two threads at once (OpenCL's rule).
 * OpenCL state does not survive fork(): a child must open its own qe_cl, and
 * a parent that will fork (Check's runner with CK_FORK=yes) must not call
 * OpenCL before forking - tests open the shared context lazily in the child.
 */
#ifndef QE_CL_H
#define QE_CL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* ---- errors ---- */

/* Name of an OpenCL error code ("CL_OUT_OF_RESOURCES"); never NULL. Unknown
 * codes give "CL_UNKNOWN_ERROR". */
const char *qe_cl_errstr(cl_int err);

/* ---- devices ---- */

typedef struct qe_cl_device_info {
    int index;                  /* global index over all platforms' devices */
    int platform_index;         /* index of its platform */
    int device_index;           /* index within its platform */
    cl_platform_id platform;
    cl_device_id device;
    char platform_name[128];    /* "NVIDIA CUDA", "Portable Computing Language" */
    char platform_vendor[128];
    char platform_version[128]; /* "OpenCL 3.0 CUDA 12.8.90" */
    char name[256];             /* device name */
    char vendor[128];
    uint32_t vendor_id;         /* PCI vendor id: 0x10de NVIDIA, 0x1002 AMD, 0x8086 Intel */
    char driver_version[128];
    char device_version[128];   /* "OpenCL 3.0 CUDA" */
    char c_version[128];        /* "OpenCL C 1.2" */
    cl_device_type type;
    const char *type_str;       /* "GPU", "CPU", "ACCELERATOR", "OTHER" (static) */
    uint64_t global_mem;        /* bytes */
    uint64_t max_alloc;         /* largest single buffer, bytes */
    uint64_t local_mem;         /* bytes per work-group */
    uint64_t global_cache;      /* global memory cache (L2 on GPUs), bytes; 0 none */
    uint32_t compute_units;
    uint32_t clock_mhz;
    uint32_t mem_base_align;    /* sub-buffer origin alignment, bytes */
    size_t max_wg_size;         /* work-items per work-group */
    size_t max_wi_sizes[3];     /* per dimension */
    int fp32_div_rn;            /* -cl-fp32-correctly-rounded-divide-sqrt builds (its FP config) */
    char *extensions;           /* space-separated, malloc'ed, never NULL */
} qe_cl_device_info;

/* Enumerate every device of every platform. On success *out is an array of
 * *n entries (free with qe_cl_list_free). No platform at all is QE_ENOTFOUND
 * (message says so); a platform whose devices cannot be queried is skipped
 * with a debug log. */
qe_status qe_cl_list(qe_cl_device_info **out, size_t *n);
void qe_cl_list_free(qe_cl_device_info *list, size_t n); /* NULL is fine */

/* Pick a device from a listing by `choice` (see the top of this file; NULL or
 * "" means $QEVAL_DEVICE, then the default). *index receives the entry's
 * position. No match is QE_ENOTFOUND with a message that lists the devices;
 * an empty listing is QE_ENOTFOUND. */
qe_status qe_cl_select(const qe_cl_device_info *list, size_t n, const char *choice,
                       size_t *index);

/* True when `extension` appears as a whole word in info->extensions. */
int qe_cl_has_extension(const qe_cl_device_info *info, const char *extension);

/* ---- context and queue ---- */

typedef struct qe_cl qe_cl;

enum qe_cl_flags {
    QE_CL_PROFILE = 1u << 0, /* queue with CL_QUEUE_PROFILING_ENABLE */
};

/* Open the device named by `choice` (see above) with a context and an
 * in-order queue. flags: QE_CL_* bits. On success *out owns them. */
qe_status qe_cl_open(const char *choice, unsigned flags, qe_cl **out);
void qe_cl_close(qe_cl *cl); /* waits for queued work; NULL is fine */

const qe_cl_device_info *qe_cl_device(const qe_cl *cl); /* valid until close */
int qe_cl_profiling(const qe_cl *cl);                     /* QE_CL_PROFILE given */
/* Kernel launches (qe_cl_run) since open, and the host time spent inside
 * clEnqueueNDRangeKernel for them: what a launch costs the host, which
 * bounds a schedule of many small kernels (qeval bench reports it). */
void qe_cl_launch_stats(const qe_cl *cl, uint64_t *launches, uint64_t *enqueue_ns);
/* Host time spent blocked on the device since open (blocking reads and
 * writes, qe_cl_finish): what the host waited for queued work to finish.
 * Beside a schedule's wall time it tells who limits it: near zero, the host
 * issuing the work; most of it, the device. */
uint64_t qe_cl_wait_ns(const qe_cl *cl);

/* Block until all queued work is done / has been submitted to the device. */
qe_status qe_cl_finish(qe_cl *cl);
qe_status qe_cl_flush(qe_cl *cl);

/* ---- capabilities (probed by compiling kernels/probe.cl) ---- */

typedef struct qe_cl_caps {
    int fp16;         /* half arithmetic (cl_khr_fp16) builds and computes right */
    int subgroups;    /* sub_group_reduce_add builds and computes right */
    int subgroup_size;/* work-items per subgroup seen by the probe (0 if none) */
    int half_storage; /* vload_half/vstore_half build and round-trip */
    int ptx_shfl;     /* inline PTX shfl.sync.bfly.b32 builds and computes right */
    int ptx_mma;      /* inline PTX mma.sync m16n8k16 f16->f32, cp.async and ldmatrix
                         (sm_80+: what kernels/mma.cl needs) build and compute right */
    int wgmma;        /* kernels/wgmma.cl's wgmma m64n128k16 (sm_90a), built by
                         qe_cl_build_wgmma, computes right (mma.cl's MT_WG build) */
} qe_cl_caps;

/* Probe the device once per process (results are cached per device, so later
 * calls, and other handles on the same device, are free). A probe that does
 * not build or computes a wrong answer means "not available", never an error;
 * only a broken context or queue returns an error. */
qe_status qe_cl_probe(qe_cl *cl, qe_cl_caps *out);

/* ---- programs and kernels ---- */

/* Build a program from the named kernel sources ("util.cl", ...; given in this
 * order, as if concatenated) with build options (NULL = none, e.g. "-DQK=32").
 * Uses the binary cache. A compile error returns QE_ECL; the message holds the
 * start of the build log and the full log is printed as a warning. A missing
 * source is QE_ENOTFOUND. */
qe_status qe_cl_build(qe_cl *cl, const char *const *names, size_t n_names,
                      const char *options, cl_program *out);
/* Same, for one source. */
qe_status qe_cl_build1(qe_cl *cl, const char *name, const char *options, cl_program *out);
/* Build like qe_cl_build, then make the program again from its binary (the
 * PTX NVIDIA's OpenCL produces) patched by qe_cl_wgmma_patch: what a program
 * using kernels/wgmma.cl needs. QE_EUNSUPPORTED where the binary is not PTX
 * for sm_90; QE_ECL where the driver does not build the patched PTX. */
qe_status qe_cl_build_wgmma(qe_cl *cl, const char *const *names, size_t n_names,
                            const char *options, cl_program *out);
/* kernels/wgmma.cl's PTX comments ("// @WG...") in the n bytes of ptx as the
 * wgmma instructions they stand for, and ".target sm_90" as sm_90a, into a
 * malloc'ed, NUL-terminated text (*out, *out_n bytes without the NUL).
 * QE_EUNSUPPORTED when ptx has no .target sm_90 (or sm_90a) line or a PTX ISA version
 * before 8.0 (wgmma's first), QE_ECORRUPT for a marker it cannot read (its
 * byte offset named), QE_ENOMEM. Pure text: lib/cl's tests run it anywhere. */
qe_status qe_cl_wgmma_patch(const char *ptx, size_t n, char **out, size_t *out_n);
void qe_cl_program_free(cl_program p); /* NULL is fine */

/* Kernel `name` of program p. Unknown name is QE_ECL (CL_INVALID_KERNEL_NAME). */
qe_status qe_cl_kernel(cl_program p, const char *name, cl_kernel *out);
void qe_cl_kernel_free(cl_kernel k); /* NULL is fine */

/* Set argument i to `size` bytes at `value` (a cl_mem's address for buffers,
 * NULL with a size for __local memory). */
qe_status qe_cl_arg(cl_kernel k, cl_uint i, size_t size, const void *value);
/* Set arguments 0..n-1 from (size_t size, const void *value) pairs:
 *   qe_cl_args(k, 3, sizeof(cl_mem), &buf, sizeof(int), &n, sizeof(float), &a) */
qe_status qe_cl_args(cl_kernel k, cl_uint n, ...);
/* Shorthand for an lvalue argument: QE_CL_ARG(k, 0, buf) */
#define QE_CL_ARG(k, i, v) qe_cl_arg((k), (i), sizeof(v), &(v))

/* Per-kernel limits on this device: max work-group size for this kernel,
 * preferred work-group size multiple (warp/wavefront/SIMD width), and
 * __local bytes the kernel uses. Any out pointer may be NULL. */
qe_status qe_cl_kernel_limits(qe_cl *cl, cl_kernel k, size_t *max_wg, size_t *wg_multiple,
                              uint64_t *local_bytes);

/* Enqueue k over a dims-dimensional range (1..3). global[d] must be a
 * multiple of local[d] when local is given; local NULL lets the driver pick.
 * If ev is non-NULL it receives an event (free with qe_cl_event_free); with
 * QE_CL_PROFILE it carries timings. Errors name the kernel. */
qe_status qe_cl_run(qe_cl *cl, cl_kernel k, cl_uint dims, const size_t *global,
                    const size_t *local, cl_event *ev);

/* ---- a second queue ----
 * A qe_cl also has a side queue (in-order, made on first use, profiled
 * like the main one): work on it may run beside the main queue's, ordered
 * against it only by events. engine.c's f16 weight copies run there while
 * the main queue multiplies (lib/engine_wh.c). Buffer reads, writes, fills
 * and qe_cl_run use the main queue; qe_cl_finish and qe_cl_flush cover both. */
enum qe_cl_queue { QE_CL_MAIN = 0, QE_CL_SIDE = 1 };

/* qe_cl_run on queue `queue`, starting only after the n_wait events in
 * wait (from either queue) have completed; with a wait list the other
 * queue is flushed first (OpenCL's condition for waiting across queues).
 * A queue other than the two, or a wait list that does not match n_wait
 * or holds NULL, is QE_EINVAL. */
qe_status qe_cl_run_on(qe_cl *cl, int queue, cl_kernel k, cl_uint dims, const size_t *global,
                       const size_t *local, cl_uint n_wait, const cl_event *wait, cl_event *ev);
/* Later commands on `queue` wait for the n_wait events in wait and for
 * everything enqueued on `queue` before; *ev (if ev is non-NULL; free with
 * qe_cl_event_free) completes then. With n_wait 0 it is a marker: an event
 * for "all of queue's work so far is done". Errors as qe_cl_run_on. */
qe_status qe_cl_barrier(qe_cl *cl, int queue, cl_uint n_wait, const cl_event *wait, cl_event *ev);

/* ---- buffers ---- */

enum qe_cl_mem_flags {
    QE_CL_RW = 0,      /* kernels read and write (default) */
    QE_CL_RO = 1u << 0, /* kernels only read */
    QE_CL_WO = 1u << 1, /* kernels only write */
};

/* A device buffer of `bytes` (> 0, <= the device's max_alloc: else QE_ERANGE
 * naming the limit). If `init` is non-NULL, `bytes` bytes are copied from it. */
qe_status qe_cl_alloc(qe_cl *cl, size_t bytes, unsigned flags, const void *init, cl_mem *out);
/* A view of parent[offset, offset+bytes); offset must be a multiple of the
 * device's mem_base_align (QE_EINVAL otherwise). Free it before the parent. */
qe_status qe_cl_sub(qe_cl *cl, cl_mem parent, size_t offset, size_t bytes, cl_mem *out);
void qe_cl_free(cl_mem m); /* NULL is fine */
/* Size of a buffer in bytes (0 for NULL or on error). */
size_t qe_cl_size(cl_mem m);

/* Host -> device. blocking = 0 returns at once: `src` must stay valid until
 * qe_cl_finish. Ranges are checked against the buffer size (QE_ERANGE). */
qe_status qe_cl_write(qe_cl *cl, cl_mem dst, size_t offset, size_t bytes, const void *src,
                      int blocking);
/* Device -> host, blocking. */
qe_status qe_cl_read(qe_cl *cl, cl_mem src, size_t offset, size_t bytes, void *dst);
/* Repeat a pattern of pattern_size bytes (1,2,4,...,128; bytes and offset
 * multiples of it) over dst[offset, offset+bytes). */
qe_status qe_cl_fill(qe_cl *cl, cl_mem dst, const void *pattern, size_t pattern_size,
                     size_t offset, size_t bytes);
/* Device -> device copy of `bytes`. */
qe_status qe_cl_copy(qe_cl *cl, cl_mem src, size_t src_offset, cl_mem dst, size_t dst_offset,
                     size_t bytes);

/* ---- events ---- */

qe_status qe_cl_event_wait(cl_event ev);
/* Device timestamps in nanoseconds (queued, start, end; any may be NULL).
 * Needs a queue opened with QE_CL_PROFILE (else QE_ECL,
 * CL_PROFILING_INFO_NOT_AVAILABLE). Waits for the event first. */
qe_status qe_cl_event_times(cl_event ev, uint64_t *queued_ns, uint64_t *start_ns,
                            uint64_t *end_ns);
void qe_cl_event_free(cl_event ev); /* NULL is fine */
/* One more reference to ev (each freed by its own qe_cl_event_free). */
qe_status qe_cl_event_retain(cl_event ev);

/* ---- per-kernel profile ----
 * With QE_CL_PROFILE, every qe_cl_run also keeps its launch's event and
 * kernel name (whether or not the caller asked for the event), so code that
 * launches through helpers can still be broken down per kernel. Up to 4096
 * launches wait unsummed; the next launch then waits for them and folds them
 * into the totals (profiling runs are for breakdowns, not for wall time).
 * With QEVAL_PROFILE_SHAPES set (not "0") when the device is opened, a launch counts under
 * "name[global sizes]", so one kernel's launches on different matrix shapes
 * are told apart (bench/gpu_profile.sh). With QEVAL_PROFILE_TRACE=FILE
 * set at open, each launch summed also becomes a line of FILE (written
 * anew): name, then the device's queued, start and end times in ns, tab
 * separated, in order of launch: the gaps between kernels that totals hide
 * (bench/trace_gaps.py reads it). */

typedef struct qe_cl_kernel_time {
    char name[64];   /* kernel function name (truncated) */
    uint64_t calls;  /* launches */
    uint64_t ns;     /* sum of device time, END - START */
} qe_cl_kernel_time;

/* Wait for every recorded launch and return the totals per kernel name since
 * the last take (or the open), in order of first launch; then start over.
 * *out is malloc'ed (caller frees; NULL when *n is 0). Without QE_CL_PROFILE
 * *n is 0. QE_ECL when the driver cannot give timings. */
qe_status qe_cl_profile_take(qe_cl *cl, qe_cl_kernel_time **out, size_t *n);

/* ---- program cache ---- */

typedef struct qe_cl_cache_stats {
    uint64_t hits;     /* programs created from a cached binary */
    uint64_t misses;   /* no usable cache file: built from source */
    uint64_t stores;   /* binaries written */
    uint64_t rejects;  /* cache files found but unusable (corrupt, failed to build) */
} qe_cl_cache_stats;

/* Process-wide counters since start (or the last reset). */
void qe_cl_cache_stats_get(qe_cl_cache_stats *out);
void qe_cl_cache_stats_reset(void);
/* The cache directory that would be used now (malloc'ed; NULL when the cache
 * is disabled or no location is known). */
char *qe_cl_cache_dir(void);

#endif
