/* fuzz_gguf.c - libFuzzer harness for the GGUF reader (`make fuzz`).
 *
 * Each input is opened with qe_gguf_open_mem. A rejected input must carry a
 * one-line message naming an offset; an accepted one is walked completely:
 * every kv formatted and every value (every array element) decoded, every
 * typed getter tried on every key, every key and tensor looked up by name,
 * every tensor's first and last byte read (ASan checks they are inside the
 * image). Broken invariants trap, so libFuzzer records them as crashes.
 *
 * Threading: libFuzzer's single thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "gguf.h"

static void walk_kv(const qe_gguf *g, uint64_t i)
{
    char buf[256];
    qe_gguf_value v;
    const char *key = qe_gguf_kv_key(g, i);
    CHECK(key != NULL && key[0] != '\0');
    CHECK(qe_gguf_find_key(g, key) == (int64_t)i);
    qe_gguf_kv_format(g, i, buf, sizeof buf);
    CHECK(memchr(buf, '\0', sizeof buf) != NULL);

    qe_gguf_type t = qe_gguf_kv_type(g, i);
    CHECK((unsigned)t < QE_GGUF_TYPE_COUNT);
    uint64_t n = t == QE_GGUF_ARRAY ? qe_gguf_kv_arr_len(g, i) : 1;
    for (uint64_t j = 0; j < n; j++) {
        CHECK(qe_gguf_kv_value(g, i, j, &v) == QE_OK);
        CHECK(v.type != QE_GGUF_ARRAY);
        if (v.type == QE_GGUF_STRING)
            CHECK(v.s[v.len] == '\0');
        if (v.type == QE_GGUF_BOOL)
            CHECK(v.u <= 1);
    }
    CHECK(qe_gguf_kv_value(g, i, n, &v) == QE_ERANGE);

    /* Every getter: success or a clean failure, never anything else. */
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f;
    int b;
    const char *s;
    size_t len;
    qe_gguf_type et;
    qe_status st;
    st = qe_gguf_get_u32(g, key, &u32);
    CHECK(st == QE_OK || st == QE_ECORRUPT);
    st = qe_gguf_get_i32(g, key, &i32);
    CHECK(st == QE_OK || st == QE_ECORRUPT);
    st = qe_gguf_get_u64(g, key, &u64);
    CHECK(st == QE_OK || st == QE_ECORRUPT);
    st = qe_gguf_get_f32(g, key, &f);
    CHECK(st == QE_OK || st == QE_ECORRUPT);
    st = qe_gguf_get_bool(g, key, &b);
    CHECK(st == QE_OK || st == QE_ECORRUPT);
    st = qe_gguf_get_str(g, key, &s, &len);
    CHECK(st == QE_OK || st == QE_ECORRUPT);
    st = qe_gguf_get_arr(g, key, &et, &u64);
    CHECK(st == (t == QE_GGUF_ARRAY ? QE_OK : QE_ECORRUPT));
    if (st == QE_OK && n > 0 && n <= 4096) {
        float *fd = malloc((size_t)n * sizeof *fd);
        int32_t *id = malloc((size_t)n * sizeof *id);
        if (fd && id) {
            st = qe_gguf_get_arr_f32(g, key, fd, n);
            CHECK(st == QE_OK || st == QE_ECORRUPT);
            st = qe_gguf_get_arr_i32(g, key, id, n);
            CHECK(st == QE_OK || st == QE_ECORRUPT);
        }
        free(fd);
        free(id);
        st = qe_gguf_get_arr_str(g, key, n - 1, &s, &len);
        CHECK(st == (et == QE_GGUF_STRING ? QE_OK : QE_ECORRUPT));
        if (et == QE_GGUF_STRING)
            CHECK(qe_gguf_get_arr_str(g, key, n, &s, &len) == QE_ERANGE);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qe_gguf *g = NULL;
    qe_status s = qe_gguf_open_mem(data, size, "fuzz", &g);
    if (s != QE_OK) {
        fuzz_rejected(s, g, "fuzz: offset ");
        return 0;
    }
    CHECK(qe_gguf_version(g) == 2 || qe_gguf_version(g) == 3);
    uint32_t a = qe_gguf_alignment(g);
    CHECK(a != 0 && (a & (a - 1)) == 0);
    CHECK(qe_gguf_file_size(g) == size);
    CHECK(qe_gguf_data_offset(g) <= size);
    for (uint64_t i = 0; i < qe_gguf_n_kv(g); i++)
        walk_kv(g, i);
    const uint8_t *base = qe_gguf_base(g);
    for (uint64_t i = 0; i < qe_gguf_n_tensors(g); i++) {
        const qe_gguf_tensor *t = qe_gguf_tensor_at(g, i);
        CHECK(t && t->name && strlen(t->name) < QE_GGUF_MAX_NAME);
        CHECK(qe_gguf_find_tensor(g, t->name) == t);
        CHECK(t->n_dims >= 1 && t->n_dims <= QE_GGUF_MAX_DIMS);
        CHECK(t->offset % a == 0);
        const uint8_t *p = t->data;
        CHECK(p >= base + qe_gguf_data_offset(g) && p + t->nbytes <= base + size);
        if (t->nbytes) {
            volatile uint8_t x = p[0];
            x ^= p[t->nbytes - 1];
            (void)x;
        }
    }
    CHECK(qe_gguf_tensor_at(g, qe_gguf_n_tensors(g)) == NULL);
    qe_gguf_close(g);
    return 0;
}
