/* fuzz_safetensors.c - libFuzzer harness for the safetensors reader (`make
 * fuzz`).
 *
 * Each input is opened with qe_safetensors_open_mem. A rejected input must
 * carry a one-line message; an accepted one must keep every promise of
 * safetensors.h: tensors in data-offset order, within the data section,
 * not overlapping and covering it with no hole, nbytes = n_elems x dtype
 * size, names non-empty and found by name, every tensor's first and last
 * byte readable (ASan checks they are inside the image). Broken invariants
 * trap, so libFuzzer records them as crashes.
 *
 * Threading: libFuzzer's single thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qe_safetensors *st = NULL;
    qe_status s = qe_safetensors_open_mem(data, size, "fuzz", &st);
    if (s != QE_OK) {
        fuzz_rejected(s, st, "fuzz");
        return 0;
    }
    CHECK(qe_safetensors_file_size(st) == size);
    const uint64_t off = qe_safetensors_data_offset(st);
    CHECK(off >= 8 && off <= size);
    const uint8_t *base = qe_safetensors_base(st);
    const uint64_t n = qe_safetensors_n_tensors(st);
    uint64_t at = 0; /* where the next tensor must begin: no hole, no overlap */
    for (uint64_t i = 0; i < n; i++) {
        const qe_safetensors_tensor *t = qe_safetensors_tensor_at(st, i);
        CHECK(t && t->name && t->name[0] != '\0');
        CHECK(qe_safetensors_find(st, t->name) == t);
        CHECK((unsigned)t->dtype < QE_ST_DTYPE_COUNT);
        CHECK(t->n_dims <= QE_SAFETENSORS_MAX_DIMS);
        uint64_t elems = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            CHECK(t->shape[d] >= 0);
            elems *= (uint64_t)t->shape[d]; /* the reader checked it does not overflow */
        }
        CHECK(elems == t->n_elems);
        CHECK(t->nbytes == t->end - t->begin && t->begin <= t->end);
        CHECK(t->nbytes == t->n_elems * qe_safetensors_dtype_size(t->dtype));
        CHECK(t->begin == at);
        at = t->end;
        const uint8_t *p = t->data;
        CHECK(p == base + off + t->begin && t->end <= size - off);
        if (t->nbytes) {
            volatile uint8_t x = p[0];
            x ^= p[t->nbytes - 1];
            (void)x;
        }
    }
    CHECK(at == size - off);
    CHECK(qe_safetensors_tensor_at(st, n) == NULL);
    qe_safetensors_meta(st, "format");
    qe_safetensors_close(st);
    return 0;
}
