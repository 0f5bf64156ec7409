/* internal.h - what the files of lib/cl/ share; not part of the API.
 * Everything here is still prefixed qe_cl_ because the static library
 * exports it. */
#ifndef QE_CL_INTERNAL_H
#define QE_CL_INTERNAL_H

#include <stdio.h>

#include "cl.h"

struct qe_cl {
    qe_cl_device_info info; /* own copy; info.extensions owned */
    cl_context ctx;
    cl_command_queue queue; /* in-order */
    cl_command_queue side;  /* QE_CL_SIDE, in-order, made on first use (NULL before) */
    unsigned flags;         /* QE_CL_* */
    /* QE_CL_PROFILE: launches not yet summed (events retained), and the
     * per-kernel totals since the last qe_cl_profile_take. */
    struct qe_cl_prof_pending *prof_ev; /* [prof_n] of prof_cap */
    size_t prof_n, prof_cap;
    qe_cl_kernel_time *prof_tot;        /* [prof_nk] of prof_capk */
    size_t prof_nk, prof_capk;
    int prof_shapes;                    /* QEVAL_PROFILE_SHAPES at open: name[global sizes] */
    FILE *prof_trace;                   /* QEVAL_PROFILE_TRACE at open: one line a launch */
    uint64_t n_launch, enqueue_ns;      /* qe_cl_launch_stats */
    uint64_t wait_ns;                   /* qe_cl_wait_ns */
};

struct qe_cl_prof_pending {
    cl_event ev;
    char name[64];
};

/* Record "call(what): CL_ERROR_NAME" as QE_ECL (what may be NULL), with a
 * debug log, and return QE_ECL. */
qe_status qe_cl_fail_call(const char *call, const char *what, cl_int err);

/* Build like qe_cl_build with flags: QE_CL_QUIET skips printing the build
 * log of a failed build (probes expect failures), QE_CL_WGMMA builds as
 * qe_cl_build_wgmma. */
enum { QE_CL_QUIET = 1, QE_CL_WGMMA = 2 };
qe_status qe_cl_build_ex(qe_cl *cl, const char *const *names, size_t n_names,
                         const char *options, unsigned flags, cl_program *out);

#endif
