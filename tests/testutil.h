/* testutil.h - helpers shared by the Check suites: data paths, temp dirs. */
#ifndef QE_TESTUTIL_H
#define QE_TESTUTIL_H

#include <stddef.h>

/* Path under $QEVAL_DATA (default ../shared/data) into a static buffer
 * (one per call site is fine: the buffer is rotated over 8 slots). */
const char *qe_test_data(const char *rel);
/* A fresh empty directory under $TMPDIR, removed by qe_test_rmtree. */
char *qe_test_tmpdir(void);
void qe_test_rmtree(const char *dir);
/* Write bytes to dir/name; returns the malloc'ed full path. */
char *qe_test_write(const char *dir, const char *name, const void *data, size_t n);

/* ---- the OpenCL context shared by a test case's tests ----
 * An OpenCL context does not survive fork() (PoCL hangs in the child), so the
 * unchecked fixture (qe_test_cl_setup/teardown, run in the runner process)
 * only prepares a scratch program-cache directory and points
 * QEVAL_CACHE_DIR at it; qe_test_cl() opens the context lazily, once per
 * process (once per test when Check forks, once per case with CK_FORK=no). */
struct qe_cl;
void qe_test_cl_setup(void);
void qe_test_cl_teardown(void);
struct qe_cl *qe_test_cl(void);
const char *qe_test_cl_cache_dir(void); /* the scratch cache directory */

#endif
