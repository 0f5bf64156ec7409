/* kernels.h - the OpenCL sources of kernels/NAME.cl, embedded at build time by
 * tools/embed.c. lib/cl.c looks sources up here unless QEVAL_KERNEL_DIR says
 * to read them from disk (for kernel development without rebuilding). */
#ifndef QE_KERNELS_H
#define QE_KERNELS_H

#include <stddef.h>

typedef struct qe_kernel_src {
    const char *name; /* file basename, e.g. "matmul.cl" */
    const char *src;  /* NUL-terminated source text */
    size_t len;       /* strlen(src) */
} qe_kernel_src;

extern const qe_kernel_src qe_kernel_srcs[]; /* terminated by a {0} entry */
extern const size_t qe_kernel_n_srcs;

#endif
