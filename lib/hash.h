/* hash.h - SHA-256 (FIPS 180-4), streaming, for content hashes of model and
 * dataset files (result keys in the store).
 *
 * Threading: a context is used by one thread at a time; no global state.
 */
#ifndef QE_HASH_H
#define QE_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define QE_HASH_SHA256_BYTES 32

typedef struct qe_hash_sha256 {
    uint32_t h[8];       /* chaining state */
    uint64_t n_bytes;    /* message length so far */
    uint8_t buf[64];     /* partial block */
    size_t n_buf;        /* bytes used in buf */
} qe_hash_sha256;

void qe_hash_sha256_init(qe_hash_sha256 *c);
void qe_hash_sha256_update(qe_hash_sha256 *c, const void *data, size_t n);
/* Write the digest; the context must be re-initialised before reuse. */
void qe_hash_sha256_final(qe_hash_sha256 *c, uint8_t out[QE_HASH_SHA256_BYTES]);

/* One-shot digest of a buffer. */
void qe_hash_sha256_buf(const void *data, size_t n, uint8_t out[QE_HASH_SHA256_BYTES]);

/* Digest of a whole file read in chunks. QE_EIO (naming the path) on failure. */
qe_status qe_hash_sha256_file(const char *path, uint8_t out[QE_HASH_SHA256_BYTES]);

/* Lower-case hex of n bytes into hex[2n+1] (NUL-terminated). */
void qe_hash_hex(const uint8_t *bytes, size_t n, char *hex);

#endif
