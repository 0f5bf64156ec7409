/* dataset.h - evaluation data read into documents, with content hashes.
 *
 * Kinds (qe_dataset_kind):
 *   text   the whole file is one document (bytes as they are; no decoding).
 *   jsonl  one JSON object per line (jansson); the document is the string
 *          value of `field` (default "text"; "a.b" looks into nested
 *          objects when no key "a.b" exists). Blank lines are ignored.
 *   csv    RFC 4180 (libcsv, strict): the first record is the header; the
 *          document is the value of the column named `field` (default
 *          "text"). Quoted fields may hold commas, quotes ("") and newlines.
 *   ids    pre-tokenized text, the "qeval ids" format: every line that is
 *          neither blank nor starts with '#' is one document, its token ids
 *          as decimal integers 0 .. 2147483647 separated by spaces or tabs.
 * A UTF-8 byte order mark at the start of a jsonl/csv/ids file is skipped.
 *
 * Rows: JSONL and ids rows are line numbers; CSV rows are record numbers
 * (the header is row 1) and messages add the line the record starts on.
 * A bad row (invalid JSON, missing or non-string field, wrong field count,
 * a bad token id) is an error naming file, row and problem (QE_ECORRUPT),
 * unless skip_bad_rows is set: then it is left out and recorded (row,
 * reason; qe_dataset_skipped). A CSV syntax error (a stray quote) is always
 * fatal: the rest of the file cannot be split into records reliably.
 *
 * Keys: qe_dataset_sha256 is the SHA-256 of the documents evaluated, so
 * results are keyed to the exact data whatever the file's formatting:
 *   text kinds: SHA-256("qeval-docs-1\0" || for each doc: u64le(len) || bytes)
 *   ids:        SHA-256("qeval-ids-1\0"  || for each doc: u64le(n) || n x i32le)
 * qe_dataset_file_sha256 is the plain SHA-256 of the file (sha256sum).
 *
 * Threading: a dataset is immutable after open; any number of threads may
 * read it.
 */
#ifndef QE_DATASET_H
#define QE_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum qe_dataset_kind {
    QE_DATASET_TEXT = 0,
    QE_DATASET_JSONL = 1,
    QE_DATASET_CSV = 2,
    QE_DATASET_IDS = 3
} qe_dataset_kind;

typedef struct qe_dataset qe_dataset;

typedef struct qe_dataset_opts {
    qe_dataset_kind kind;
    const char *field;  /* JSONL field / CSV column; NULL = "text"; unused otherwise */
    int skip_bad_rows;  /* 1: leave bad rows out and record them; 0: fail */
} qe_dataset_opts;

typedef struct qe_dataset_skip {
    int64_t row;        /* line (jsonl, ids) or record (csv) number */
    const char *reason; /* what was wrong, e.g. "line 4: no field 'text'" */
} qe_dataset_skip;

/* "text", "jsonl", "csv", "ids"; QE_EINVAL for other names. */
qe_status qe_dataset_kind_parse(const char *name, qe_dataset_kind *out);
const char *qe_dataset_kind_name(qe_dataset_kind k);

/* Read and validate a whole dataset file. QE_EIO when the file cannot be
 * read; QE_ECORRUPT for bad content (message: "PATH:LINE: ..." or
 * "PATH: row N (line L): ..."), or when no document is left; QE_EINVAL for
 * a bad option. */
qe_status qe_dataset_open(const char *path, const qe_dataset_opts *o, qe_dataset **out);
void qe_dataset_close(qe_dataset *ds); /* NULL is fine */

qe_dataset_kind qe_dataset_kind_of(const qe_dataset *ds);
const char *qe_dataset_path(const qe_dataset *ds);
/* The field/column used (NULL for text and ids). */
const char *qe_dataset_field(const qe_dataset *ds);

size_t qe_dataset_n_docs(const qe_dataset *ds);
/* Document i of a text kind: its bytes (NUL-terminated; a document may
 * itself contain NUL bytes, so use *len) or NULL for ids datasets. */
const char *qe_dataset_doc(const qe_dataset *ds, size_t i, size_t *len);
/* Document i of an ids dataset: *n token ids, or NULL for text kinds. */
const int32_t *qe_dataset_doc_ids(const qe_dataset *ds, size_t i, size_t *n);
/* The row document i came from (0 for a text file). */
int64_t qe_dataset_doc_row(const qe_dataset *ds, size_t i);
/* Total bytes of all documents (ids: total number of ids). */
uint64_t qe_dataset_doc_bytes(const qe_dataset *ds);

const uint8_t *qe_dataset_sha256(const qe_dataset *ds);      /* [32], the key */
const uint8_t *qe_dataset_file_sha256(const qe_dataset *ds); /* [32] */
uint64_t qe_dataset_file_bytes(const qe_dataset *ds);

size_t qe_dataset_n_skipped(const qe_dataset *ds);
const qe_dataset_skip *qe_dataset_skipped(const qe_dataset *ds, size_t i);

/* ids datasets: QE_ECORRUPT naming file, line and id when an id is not
 * below n_vocab. QE_OK for other kinds. */
qe_status qe_dataset_check_ids(const qe_dataset *ds, int32_t n_vocab);

/* Turn one document into token ids: *ids is malloc'ed by the callee (freed
 * by the caller with free()); may be called from several threads at once. */
typedef qe_status (*qe_dataset_encode_fn)(void *ctx, const char *text, size_t len,
                                          int32_t **ids, size_t *n_ids);

/* All documents' ids concatenated in document order (*tokens malloc'ed, the
 * caller frees it). Text kinds call `encode` on n_workers threads through
 * the ordered pipeline, so the result is the same for any worker count;
 * ids datasets are copied (encode is not called and may be NULL). */
qe_status qe_dataset_tokenize(const qe_dataset *ds, qe_dataset_encode_fn encode, void *ctx,
                              int n_workers, int32_t **tokens, size_t *n_tokens);

#endif
