/* schemas.h - the SQL of schemas/NNN_name.sql, embedded at build time by
 * tools/embed.c (--name schema), in file-name order. Entry i is migration
 * i + 1: lib/store.c applies the entries above a database's
 * PRAGMA user_version in order and sets user_version to the entry count. */
#ifndef QE_SCHEMAS_H
#define QE_SCHEMAS_H

#include <stddef.h>

typedef struct qe_schema_src {
    const char *name; /* file basename, e.g. "001_core.sql" */
    const char *src;  /* NUL-terminated SQL text */
    size_t len;       /* strlen(src) */
} qe_schema_src;

extern const qe_schema_src qe_schema_srcs[]; /* terminated by a {0} entry */
extern const size_t qe_schema_n_srcs;

#endif
