/* fuzz_check.h - what every libFuzzer harness here checks (`make fuzz`):
 * CHECK traps on a broken promise, so libFuzzer records the input as a
 * crash; fuzz_rejected is the rule for a rejected input. And what the
 * harnesses that read files need: the shared data, a name of their own
 * in the temporary directory, an input written out. */
#ifndef QE_FUZZ_CHECK_H
#define QE_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "status.h"

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

/* A reader that refused its input (status s) left no handle behind, said
 * why with a malformed- or unsupported-input status (or ran out of
 * memory), and its message is one line beginning with prefix (the name it
 * was given, with what follows it where the reader promises more). */
static inline void fuzz_rejected(qe_status s, const void *handle, const char *prefix)
{
    const char *msg = qe_errmsg();
    CHECK(handle == NULL);
    CHECK(s == QE_ECORRUPT || s == QE_EUNSUPPORTED || s == QE_ENOMEM);
    if (s != QE_ENOMEM)
        CHECK(strncmp(msg, prefix, strlen(prefix)) == 0);
    CHECK(strchr(msg, '\n') == NULL);
}

/* The shared test data: QEVAL_DATA, else ../shared/data. */
static inline const char *fuzz_data(void)
{
    const char *d = getenv("QEVAL_DATA");
    return d && *d ? d : "../shared/data";
}

/* $TMPDIR (else /tmp)/qeval-fuzz-NAME-PID into buf[cap]. */
static inline void fuzz_tmp(char *buf, size_t cap, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, cap, "%s/qeval-fuzz-%s-%ld", tmp && *tmp ? tmp : "/tmp", name,
             (long)getpid());
}

/* Write b[0..n) to file path (replacing it). */
static inline void fuzz_put(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(b, 1, n, f) == n || n == 0);
    CHECK(fclose(f) == 0);
}

#endif
