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

#endif
