/* fuzz_check.h - what every libFuzzer harness here checks (`make fuzz`):
 * CHECK traps on a broken promise, so libFuzzer records the input as a
 * crash; fuzz_rejected is the rule for a rejected input. */
#ifndef QE_FUZZ_CHECK_H
#define QE_FUZZ_CHECK_H

#include <string.h>

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

#endif
