/* job.h - job files: what to evaluate, parsed with libinih and expanded
 * into a list of runs.
 *
 * A job file is INI (';' or '#' starts a comment line; " ;" starts an
 * inline comment):
 *
 *   [job]                       all keys optional
 *   name = demo                 default: the file name without .ini
 *   output = results/qeval.db   the results database
 *   n_ctx = 512                 tokens per chunk (4 .. 1048576)
 *   n_seq = 1                   chunks per device batch (1 .. 4096)
 *   top_k = 10                  top-k entries stored per position (0 .. 64)
 *   devices = gpu               device choices (qeval devices), comma-separated
 *   workers = 2                 CPU worker threads (1 .. 256)
 *   chunks = 0                  chunks per run at most (0 = all)
 *   store_tokens = yes          per-position rows (no: chunk sums only)
 *   store_logits = 0            full logits every N-th scored position (0 = never)
 *   synchronous = full          SQLite synchronous: full or normal
 *
 *   [model NAME]                one per model (NAME: letters, digits, _ . -)
 *   path = ${QEVAL_DATA}/models/stories260K.gguf    .gguf file or HF directory
 *   tokenizer = PATH            optional: vocabulary from another file
 *
 *   [dataset NAME]              one per dataset
 *   path = ${QEVAL_DATA}/text/wiki.test.raw
 *   kind = text                 text, jsonl, csv, ids; default from the
 *                               extension (.jsonl .csv .ids, else text)
 *   field = text                JSONL field / CSV column (jsonl, csv only)
 *   skip_bad_rows = no
 *
 *   [sweep]
 *   reference = f32             weight format of the KLD reference (default native)
 *   weights = q8_0, q4_0        variant weight formats
 *   kv = f16, q8_0, tq4, tq3    KV cache formats, the first is the reference's;
 *                               "K/V" gives K and V different formats
 *
 *   [generate]                  text generation (lib/generate.h) per model and format
 *   prompts = NAME              a [dataset NAME] (jsonl, csv or text: one prompt per
 *                               document); it is left out of the perplexity sweep
 *   max_new_tokens = 128
 *   slots = 8                   prompts decoded side by side (1 .. 4096; results do
 *                               not depend on it)
 *   sampling = greedy           greedy or sample
 *   temperature = 0.8           sample only (> 0, <= 100)
 *   top_k = 40                  sample only (0 = off)
 *   top_p = 0.95                sample only (0 < p <= 1)
 *   seed = 42                   sample only
 *   stop = "\n\n"               repeatable; a double-quoted string with
 *                               C escapes (\n \t \\ \" \xNN), or bare text
 *
 * Paths expand ${VAR} from the environment (an unset variable is an error)
 * and are relative to the current directory. Weight formats: native (as
 * stored) or a requantization target of lib/quant.h (f32, f16, q8_0, q4_0);
 * KV formats: those of lib/kv_format.h (f32, f16, q8_0, q4_0, tq4, tq3, tq2).
 *
 * Every problem is QE_ECORRUPT with "FILE:LINE: what was expected":
 * unknown sections and keys, repeated keys, bad values, files that do not
 * exist, unknown dataset names; QE_EIO when the job file cannot be read.
 *
 * The sweep expands, for each model and then each dataset, into the
 * reference run (reference weights, first KV format) followed by every
 * other (weights, kv) pair, weights in the order [reference, variants...]
 * and kv in the order listed; each variant names its reference. With
 * [generate], the prompts dataset is skipped there and gen_runs holds the
 * same expansion per model over the prompts (ref indexes gen_runs).
 *
 * Threading: parse on one thread at a time (libinih's options are
 * process-wide); the result is read-only.
 */
#ifndef QE_JOB_H
#define QE_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "status.h"

typedef struct qe_job_model {
    char *name;
    char *path;         /* expanded */
    char *tokenizer;    /* expanded, or NULL: the model's own vocabulary */
    int line;           /* of the section header */
} qe_job_model;

typedef struct qe_job_dataset {
    char *name;
    char *path;         /* expanded */
    qe_dataset_kind kind;
    char *field;        /* NULL unless jsonl/csv (then never NULL) */
    int skip_bad_rows;
    int line;
} qe_job_dataset;

typedef enum qe_job_sampling { QE_SAMPLE_GREEDY = 0, QE_SAMPLE_RANDOM = 1 } qe_job_sampling;

typedef struct qe_job_generate {
    int enabled;            /* a [generate] section was given */
    int prompts;            /* index into datasets */
    int max_new_tokens;
    int n_slots;            /* prompts decoded side by side (default 8) */
    qe_job_sampling sampling;
    double temperature;     /* 1 unless given */
    int top_k;              /* 0 = off */
    double top_p;           /* 1 = off */
    uint64_t seed;
    size_t n_stop;
    char **stop;            /* [n_stop], each stop_len[i] bytes (may hold NUL) */
    size_t *stop_len;
} qe_job_generate;

/* One expanded run: indices into the job's models and datasets. */
typedef struct qe_job_run {
    int model, dataset;
    const char *weights;    /* points into the job */
    const char *kv_k, *kv_v;
    int ref;                /* index of its reference run, -1 for a reference */
} qe_job_run;

typedef struct qe_job {
    char *path;             /* the job file, or the name given to parse_string */
    uint8_t sha256[32];     /* of the job file's bytes */
    char *name;
    char *output;
    int n_ctx, n_seq, top_k, workers;
    int64_t max_chunks;     /* 0 = all */
    int store_tokens, store_logits;
    int sync_normal;        /* synchronous = normal */
    size_t n_devices;
    char **devices;         /* [n_devices]; none = the default device */
    size_t n_models, n_datasets;
    qe_job_model *models;
    qe_job_dataset *datasets;
    char *reference;        /* weight format */
    size_t n_weights;
    char **weights;         /* [n_weights] variant weight formats */
    size_t n_kv;
    char **kv_k, **kv_v;    /* [n_kv] */
    qe_job_generate generate;
    size_t n_runs;
    qe_job_run *runs;       /* the expanded sweep */
    size_t n_gen_runs;
    qe_job_run *gen_runs;   /* [generate]: per model, every (weights, kv) of the sweep
                               over the prompts dataset; empty without [generate] */
} qe_job;

enum {
    QE_JOB_NO_FILE_CHECK = 1u << 0, /* do not require model/dataset files to exist */
};

/* Parse and validate a job file; *out is freed with qe_job_free. */
qe_status qe_job_parse_file(const char *path, unsigned flags, qe_job **out);
/* The same from text; `name` stands for the file in messages. */
qe_status qe_job_parse_string(const char *text, size_t len, const char *name, unsigned flags,
                              qe_job **out);
void qe_job_free(qe_job *job); /* NULL is fine */

#endif
