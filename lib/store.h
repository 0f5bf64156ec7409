/* store.h - the results database (SQLite): schema migrations, content keys,
 * idempotent chunk writes, resume, and merging databases.
 *
 * Schema: schemas/NNN_*.sql, embedded into the binary (lib/schemas.h) and
 * applied in order at open; PRAGMA user_version records how many ran, and
 * PRAGMA application_id marks the file as qeval's (0x71657661, "qeva").
 * README.md "Results database" describes the tables and views.
 *
 * Keys come from content, never from row ids, so databases written by
 * separate processes (Slurm array tasks) merge without collisions:
 *   model    SHA-256 of the weights file       dataset  SHA-256 of its documents
 *   run      SHA-256 of qe_store_run_config's canonical text
 *   chunk    (run key, chunk index)            token    (run key, chunk, position)
 *   session  SHA-256 of host, pid and start time of one writing process
 * Keys are passed around as 64-character lower-case hex strings.
 *
 * Connections: WAL journal, busy_timeout on every connection,
 * synchronous=FULL unless QE_STORE_SYNC_NORMAL, foreign keys enforced.
 * Every write is one `BEGIN IMMEDIATE` transaction (a chunk and all its
 * tokens together), so a crash leaves whole chunks only. Statements are
 * prepared once per handle.
 *
 * Errors: QE_EIO for "disk full", "read-only" and unopenable files,
 * QE_ECORRUPT for a file that is not an SQLite or not a qeval database,
 * QE_EUNSUPPORTED for a schema newer than this build, QE_EDB for other
 * SQLite failures; messages name the database path and the operation. A
 * failed write is rolled back: the database stays as it was.
 *
 * Threading: a qe_store handle is used by one thread at a time. qeval gives
 * the only read-write handle to its writer thread (pool.h) and reads through
 * separate read-only handles.
 */
#ifndef QE_STORE_H
#define QE_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "status.h"

typedef struct qe_store qe_store;

#define QE_STORE_KEY_HEX 65 /* 64 hex digits + NUL */

enum {
    QE_STORE_READONLY = 1u << 0,    /* open for reading; never creates or migrates */
    QE_STORE_SYNC_NORMAL = 1u << 1, /* synchronous=NORMAL (faster, may lose the last
                                       commits on power loss; never corrupts) */
};

/* Number of migrations built into this qeval (the user_version it writes). */
int qe_store_schema_version(void);

/* Open or create the database at path. Read-write opens create the file,
 * apply missing migrations (each in its own transaction) and fail with
 * QE_EIO when the file is read-only. Read-only opens need an up-to-date
 * schema (QE_EUNSUPPORTED otherwise: open it read-write once to upgrade).
 * busy_ms: busy_timeout in milliseconds (0 = 30000). An empty path is
 * QE_EINVAL (SQLite would make it a temporary database). */
qe_status qe_store_open(const char *path, unsigned flags, int busy_ms, qe_store **out);
void qe_store_close(qe_store *st); /* NULL is fine */

const char *qe_store_path(const qe_store *st);
/* PRAGMA user_version of the open database. */
int qe_store_version(const qe_store *st);
/* The connection, for read queries (reports, tests). Owned by the handle. */
sqlite3 *qe_store_sqlite(qe_store *st);
/* Map an SQLite failure on this handle to a status with a message
 * "PATH: what: sqlite message". */
qe_status qe_store_fail(qe_store *st, int rc, const char *what);

/* ---- models, datasets, sessions ---- */

typedef struct qe_store_model {
    const char *sha256;        /* key: hex SHA-256 of the weights file */
    const char *name, *path;
    const char *source_format; /* "gguf" or "hf" */
    const char *arch;          /* "llama" */
    uint64_t n_params, weight_bytes, file_bytes;
    const char *hparams_json;  /* JSON object text */
    const char *weight_types_json; /* JSON object {type: tensor count} */
} qe_store_model;

/* Insert a model unless its key is present (then nothing changes). */
qe_status qe_store_put_model(qe_store *st, const qe_store_model *m);

typedef struct qe_store_skip {
    int64_t row;
    const char *reason;
} qe_store_skip;

typedef struct qe_store_dataset {
    const char *sha256;        /* key: SHA-256 of the documents (dataset.h) */
    const char *kind;          /* "text", "jsonl", "csv", "ids" */
    const char *path;
    const char *field;         /* NULL for text and ids */
    const char *file_sha256;
    uint64_t file_bytes, n_docs, doc_bytes;
    size_t n_skipped;
    const qe_store_skip *skipped; /* [n_skipped] */
} qe_store_dataset;

/* Insert a dataset and its skipped rows unless its key is present. */
qe_status qe_store_put_dataset(qe_store *st, const qe_store_dataset *d);

/* Record what a tokenizer made of a dataset (ignored when present). */
qe_status qe_store_put_dataset_tokens(qe_store *st, const char *dataset_sha256,
                                      const char *tokenizer_sha256, uint64_t n_tokens,
                                      const char *tokens_sha256);

typedef struct qe_store_session {
    const char *job_name;
    const char *job_sha256;    /* hex SHA-256 of the job file, or NULL */
    const char *device, *driver, *build_commit;
    const char *gemm;          /* the engine's matmul kernels: "f32", "mma", or "-" for
                                  the C reference; NULL = "-" */
} qe_store_session;

/* Start a session (one writing process): its key is the SHA-256 of host,
 * pid and the current time, written to key. */
qe_status qe_store_session_begin(qe_store *st, const qe_store_session *s,
                                 char key[QE_STORE_KEY_HEX]);
qe_status qe_store_session_end(qe_store *st, const char *session_key);

/* ---- runs ---- */

/* Everything that changes a run's per-chunk results. The sequence count per
 * batch, the worker count, the chunk limit and the reference are not part
 * of it: they change how or how much is computed, not what. */
typedef struct qe_store_run_config {
    const char *task;             /* "perplexity" */
    const char *model_sha256;     /* hex */
    const char *dataset_sha256;   /* hex */
    const char *tokenizer_sha256; /* hex: the file the vocabulary came from */
    int n_ctx;
    const char *weights;          /* weight format evaluated: "native", "f32", "q8_0", ... */
    const char *kv_k, *kv_v;      /* KV cache formats: "f16", "q8_0", "tq3", ... */
    int top_k;                    /* top-k entries stored per position */
    const char *chunking;         /* chunk rules; NULL = "llama-perplexity" */
} qe_store_run_config;

/* The canonical text of a config (malloc'ed into *text): "qeval-run 1\n"
 * then "name=value\n" lines in a fixed order. QE_EINVAL naming the field for
 * a missing value, a key that is not 64 hex digits, or a value with
 * characters outside [A-Za-z0-9_./:+-]. */
qe_status qe_store_run_config_text(const qe_store_run_config *c, char **text);
/* SHA-256 hex of the canonical text. */
qe_status qe_store_run_key(const qe_store_run_config *c, char key[QE_STORE_KEY_HEX]);

/* What is stored of a run. */
typedef struct qe_store_resume {
    char run_key[QE_STORE_KEY_HEX];
    int existed;           /* the run was in the database before */
    int64_t n_chunks;      /* planned chunks, -1 until qe_store_run_plan */
    int64_t n_done;        /* chunks stored */
    int64_t first_missing; /* lowest chunk index not stored */
    uint8_t *done;         /* [done_len] 1 where the chunk is stored (malloc'ed; may be NULL) */
    int64_t done_len;      /* highest stored index + 1 (0 when none) */
} qe_store_resume;

void qe_store_resume_free(qe_store_resume *r); /* frees r->done; NULL is fine */
/* 1 if chunk i is stored according to r. */
int qe_store_resume_has(const qe_store_resume *r, int64_t i);

/* Create the run row for cfg (described by the session's job, host, device,
 * driver and commit) or find it, mark it running, and say which chunks are
 * stored. ref_run_key: the KLD reference's key, NULL for a reference (the
 * reference is not part of the key: a run compared against another
 * reference by a later job keeps its chunks, and the later non-NULL
 * reference is recorded). The model, dataset and session rows must exist
 * (QE_ENOTFOUND naming the missing one otherwise). */
qe_status qe_store_run_begin(qe_store *st, const qe_store_run_config *cfg,
                             const char *ref_run_key, const char *session_key,
                             qe_store_resume *out);

/* The stored chunks of a run, without writing (works read-only).
 * QE_ENOTFOUND when there is no such run. */
qe_status qe_store_run_resume(qe_store *st, const char *run_key, qe_store_resume *out);

/* Record the plan: dataset tokens and chunks of the full plan. A plan that
 * differs from the one recorded is QE_ECORRUPT (same key, different data:
 * a tokenizer or chunking change that the key missed). */
qe_status qe_store_run_plan(qe_store *st, const char *run_key, int64_t n_tokens,
                            int64_t n_chunks);
/* Bytes of the weights in the format evaluated (for bits per weight). */
qe_status qe_store_run_weight_bytes(qe_store *st, const char *run_key, uint64_t bytes);
/* Close a run: status "done" (all planned chunks stored), "partial" (a
 * chunk limit stopped it) or "failed". */
qe_status qe_store_run_end(qe_store *st, const char *run_key, const char *status);

/* ---- chunk results ---- */

enum {
    QE_STORE_CHUNK_NO_TOKENS = 1u << 0, /* store the chunk's sums only, no token rows */
};

/* One evaluated perplexity chunk, as the evaluation loop's per-chunk callback
 * delivers it (lib/eval.h). Arrays are indexed by scored position j =
 * 0 .. n_scored-1, which is chunk position first + j predicting the token
 * at first + j + 1. The store computes the chunk's sums from these arrays,
 * in position order: nll_sum = sum -logprob, nll2_sum = sum logprob^2,
 * n_top1 = #(argmax == target). */
typedef struct qe_store_chunk {
    int64_t chunk;             /* index in the run's chunk plan */
    int first;                 /* first scored position (n_ctx/2) */
    int n_scored;              /* scored positions (n_ctx - 1 - first) */
    const int32_t *target;     /* [n_scored] target ids */
    const float *logprob;      /* [n_scored] log p(target) */
    const int32_t *argmax;     /* [n_scored] most likely ids */
    int top_k;                 /* entries per position below; 0 = none */
    const int32_t *topk_id;    /* [n_scored][top_k] best first */
    const float *topk_logprob; /* [n_scored][top_k] their log-probs */
    const float *kld;          /* [n_scored] KL(ref || this) per position, or NULL */
    double seconds;            /* device time for this chunk */
    unsigned flags;            /* QE_STORE_CHUNK_* */
    /* optional full logits at chosen positions (stored as zlib'ed f16) */
    int n_logits;              /* rows below; 0 = none */
    int n_vocab;
    const int32_t *logit_pos;  /* [n_logits] chunk positions (first <= pos < first+n_scored) */
    const float *logits;       /* [n_logits][n_vocab] */
    /* optional: the top-k JSON of each position already encoded with
     * qe_store_topk_json (on another thread: formatting floats is most of a
     * chunk write's CPU time); NULL = encoded by qe_store_put_chunk */
    char *const *topk_json;    /* [n_scored] */
} qe_store_chunk;

/* The tokens.topk text of one position: JSON [[id, logprob], ...] with
 * 9 significant digits (a float reads back exactly; non-finite -> null).
 * malloc'ed (free()); NULL when out of memory. Thread-safe. */
char *qe_store_topk_json(const int32_t *id, const float *logprob, int k);

/* Store a chunk and its tokens (and logits) in one transaction. A chunk
 * already stored is left as it is (*written = 0): rewriting is a no-op, so
 * resumed and repeated runs never duplicate. QE_EINVAL for inconsistent
 * arrays (the message names the field), QE_ENOTFOUND for an unknown run. */
qe_status qe_store_put_chunk(qe_store *st, const char *run_key, const char *session_key,
                             const qe_store_chunk *c, int *written);

/* Decode stored logits of (run, chunk, pos) into *out (malloc'ed n_vocab
 * floats, exact f16 values). QE_ENOTFOUND if none were stored; QE_ECORRUPT
 * if the blob does not decode to n_vocab halves. */
qe_status qe_store_get_logits(qe_store *st, const char *run_key, int64_t chunk, int pos,
                              float **out, int *n_vocab);

/* llama-perplexity's KLD summary of run against ref_run; a summary over
 * more tokens replaces one over fewer. */
qe_status qe_store_put_kld(qe_store *st, const char *run_key, const char *ref_run_key,
                           const char *session_key, const qe_kld_summary *s);

/* Add seconds (and tokens, calls) to a run's phase for this session. */
qe_status qe_store_add_timing(qe_store *st, const char *run_key, const char *session_key,
                              const char *phase, double seconds, uint64_t n_tokens,
                              uint64_t n_calls);

/* ---- generation runs (schemas/005_generate.sql; lib/store_gen.c) ---- */

/* Everything that changes a generation run's outputs. The slot count, the
 * device and the reference are not part of it. */
typedef struct qe_store_gen_config {
    const char *model_sha256;     /* hex */
    const char *prompts_sha256;   /* hex: the prompts dataset's key */
    const char *tokenizer_sha256; /* hex */
    const char *weights;          /* "native", "f32", "q8_0", ... */
    const char *kv_k, *kv_v;
    int max_new;                  /* >= 1 */
    int sample;                   /* 0 greedy, 1 sample */
    double temperature, top_p;
    int top_k;                    /* sampling candidates */
    uint64_t seed;
    size_t n_stop;
    const char *const *stop;      /* [n_stop], stop_len[i] bytes each */
    const size_t *stop_len;
    int top_logprobs;             /* candidates stored per token (0 .. 64) */
} qe_store_gen_config;

/* Canonical text ("qeval-gen 1\n" then "name=value\n" lines; stop strings
 * as hex) and its SHA-256 hex; QE_EINVAL naming a bad field. */
qe_status qe_store_gen_config_text(const qe_store_gen_config *c, char **text);
qe_status qe_store_gen_key(const qe_store_gen_config *c, char key[QE_STORE_KEY_HEX]);
/* A prompt's key: SHA-256 hex of "GEN_KEY:INDEX". */
void qe_store_gen_prompt_key(const char *gen_key, int64_t index, char key[QE_STORE_KEY_HEX]);

/* Create (or find and reopen) the generation run of cfg over n_prompts
 * prompts, and say which are stored: *done is malloc'ed [n_prompts] (1 =
 * stored), *n_done their count. Model, dataset and session rows must exist
 * (QE_ENOTFOUND otherwise). */
qe_status qe_store_gen_begin(qe_store *st, const qe_store_gen_config *cfg, const char *ref_gen_key,
                             const char *session_key, size_t n_prompts, uint8_t **done,
                             size_t *n_done);
/* The stored prompts of a generation run, without writing (works
 * read-only); no such run gives all zeros. */
qe_status qe_store_gen_stored(qe_store *st, const char *gen_key, size_t n_prompts, uint8_t **done,
                              size_t *n_done);

/* One finished prompt (lib/generate.h's qe_gen_result, as stored). */
typedef struct qe_store_gen_prompt {
    int64_t index;              /* document index in the prompts dataset */
    const uint8_t *prompt_sha256; /* [32] of the prompt's bytes */
    int n_prompt, n_gen;
    const int32_t *ids;         /* [n_gen] */
    const float *logp;          /* [n_gen] */
    int top_k;
    const int32_t *topk_id;     /* [n_gen][top_k] */
    const float *topk_logp;     /* [n_gen][top_k] */
    const char *text;           /* text_len bytes */
    size_t text_len;
    const char *finish;         /* "eos", "stop", "length", "ctx" */
    int stop_index;             /* -1: none */
    uint64_t seed;
    double ttft_s, prefill_tps, decode_s, decode_tps;
} qe_store_gen_prompt;

/* Store a prompt and its tokens in one transaction; a prompt already stored
 * is left as it is (*written = 0; written may be NULL). */
qe_status qe_store_gen_put_prompt(qe_store *st, const char *gen_key, const char *session_key,
                                  const qe_store_gen_prompt *p, int *written);

typedef struct qe_store_gen_step {
    int64_t index;
    int prefill, n_seqs, n_tokens;
    double seconds;
} qe_store_gen_step;

/* A session's device calls of a generation run, in one transaction. */
qe_status qe_store_gen_put_steps(qe_store *st, const char *gen_key, const char *session_key,
                                 const qe_store_gen_step *s, size_t n);
/* Close a generation run: "done", "partial" or "failed". */
qe_status qe_store_gen_end(qe_store *st, const char *gen_key, const char *status);

/* ---- merging ---- */

typedef struct qe_store_merge_stats {
    int64_t models, datasets, sessions, runs, chunks, tokens, kld; /* rows added */
    int64_t conflicts; /* chunks in both with different sums (dst's kept) */
    int64_t bench;     /* bench rows added (their bench_kernels rows come along) */
    int64_t gen_runs, gen_prompts; /* generation rows added */
} qe_store_merge_stats;

enum {
    QE_STORE_MERGE_PROGRESS = 1u << 0, /* a progress line (lib/log.h) over the token rows */
};

/* Add src_path's rows that dst lacks (ATTACH read-only, INSERT OR IGNORE by
 * content keys, one transaction). Runs present in both get the union of
 * their chunks; a chunk present in both keeps dst's rows and, when the
 * sums differ, counts as a conflict. Bench rows are copied by bench_key
 * with their kernel times. Merging the same file twice adds
 * nothing. src must have dst's schema version (QE_EUNSUPPORTED otherwise)
 * and must not be dst itself (QE_EINVAL); a source whose tables, values or
 * rows are not what qeval writes is QE_ECORRUPT, and nothing of it is
 * merged. flags: QE_STORE_MERGE_*. stats may be NULL. */
qe_status qe_store_merge(qe_store *dst, const char *src_path, unsigned flags,
                         qe_store_merge_stats *stats);

#endif
