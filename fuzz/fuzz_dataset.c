/* fuzz_dataset.c - libFuzzer harness for dataset files (`make fuzz`): the
 * evaluation data users bring, read as JSONL (jansson), CSV (libcsv) and
 * pre-tokenized ids, each strict and with skip_bad_rows.
 *
 * Each input is written to a file in the temporary directory and opened as
 * each kind. A rejected input must carry a one-line message naming the
 * file; an accepted one must keep dataset.h's promises: at least one
 * document, each NUL-terminated text (or ids inside 0 .. 2^31 - 1) of the
 * kind asked for, rows that never go backwards, the bytes counted, a reason
 * for every skipped row; strict reading must fail where rows were skipped.
 * Broken promises trap, so libFuzzer records them as crashes.
 *
 * Threading: libFuzzer's single thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "fuzz_check.h"

static char path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_tmp(path, sizeof path, "dataset");
    return 0;
}

/* Open the file as kind k; returns the number of skipped rows (-1: rejected). */
static long one(qe_dataset_kind k, int skip)
{
    const qe_dataset_opts o = {.kind = k, .field = NULL, .skip_bad_rows = skip};
    qe_dataset *ds = NULL;
    qe_status s = qe_dataset_open(path, &o, &ds);
    if (s != QE_OK) {
        fuzz_rejected(s, ds, path);
        return -1;
    }
    CHECK(qe_dataset_kind_of(ds) == k);
    const size_t n = qe_dataset_n_docs(ds);
    CHECK(n >= 1);
    uint64_t bytes = 0;
    int64_t row = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0, none = 1;
        if (k == QE_DATASET_IDS) {
            const int32_t *ids = qe_dataset_doc_ids(ds, i, &len);
            CHECK(ids != NULL && len >= 1 && qe_dataset_doc(ds, i, &none) == NULL);
            for (size_t j = 0; j < len; j++)
                CHECK(ids[j] >= 0);
        } else {
            const char *d = qe_dataset_doc(ds, i, &len);
            CHECK(d != NULL && d[len] == '\0' && qe_dataset_doc_ids(ds, i, &none) == NULL);
        }
        bytes += len;
        CHECK(qe_dataset_doc_row(ds, i) > row);
        row = qe_dataset_doc_row(ds, i);
    }
    CHECK(bytes == qe_dataset_doc_bytes(ds));
    const size_t ns = qe_dataset_n_skipped(ds);
    CHECK(skip || ns == 0);
    for (size_t i = 0; i < ns; i++) {
        const qe_dataset_skip *sk = qe_dataset_skipped(ds, i);
        CHECK(sk && sk->row >= 1 && sk->reason && sk->reason[0]);
    }
    qe_dataset_close(ds);
    return (long)ns;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_put(path, data, size);
    const qe_dataset_kind kinds[] = {QE_DATASET_JSONL, QE_DATASET_CSV, QE_DATASET_IDS};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        const long lenient = one(kinds[i], 1);
        const long strict = one(kinds[i], 0);
        /* strict reading accepts exactly what needed no skipping */
        CHECK(strict == -1 || strict == 0);
        if (lenient == 0)
            CHECK(strict == 0);
        if (lenient > 0)
            CHECK(strict == -1);
        if (lenient == -1)
            CHECK(strict == -1);
    }
    return 0;
}
