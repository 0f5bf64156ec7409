/* report.h - what people read from a results database: the format
 * comparison table, CSV exports, and any SQL query as a table or CSV.
 *
 * All functions only read (give them a QE_STORE_READONLY handle). Tables
 * are aligned on the terminal: numbers right, text left, control characters
 * in text shown escaped (\n, \xNN). CSV is RFC 4180 written with libcsv:
 * text fields go through csv_fwrite (quoted, quotes doubled, newlines kept),
 * numbers as they are (integers exactly, reals with 17 significant digits so
 * they read back bit for bit), NULL as an empty field, BLOBs as hex.
 *
 * Threading: one call at a time per store handle.
 */
#ifndef QE_REPORT_H
#define QE_REPORT_H

#include <stdio.h>

#include "status.h"
#include "store.h"

typedef enum qe_report_format {
    QE_REPORT_TABLE = 0, /* aligned text */
    QE_REPORT_CSV = 1
} qe_report_format;

/* Run one read-only SQL statement and print its rows with a header row.
 * QE_EINVAL (message "SQL: ...") for a statement that does not compile,
 * writes, or is followed by another statement. */
qe_status qe_report_query(qe_store *st, const char *sql, qe_report_format fmt, FILE *out);

/* The format comparison: per model, dataset and context, every run beside
 * its reference: PPL ± error, ΔPPL % (over the chunks both hold), mean and
 * 99th-percentile KLD, same-top %, bits per weight, weight size, tokens/s
 * (from v_format_matrix). ref_run: a run key or a unique prefix of one
 * (at least 4 hex digits) to compare every run of the same dataset and
 * n_ctx against instead (KLD columns then show only summaries recorded
 * against that run); NULL for each run's own reference. QE_ENOTFOUND when
 * ref_run matches no run, QE_EINVAL when it matches several. As a table,
 * a database holding generation runs also gets a second table after it
 * (v_gen_summary): per model and format, prompts stored, exact-match rate
 * and mean/min first-divergence position against the reference format,
 * mean generated length, decode tokens/s and time to first token. */
qe_status qe_report_compare(qe_store *st, const char *ref_run, qe_report_format fmt, FILE *out);

typedef enum qe_export_what {
    QE_EXPORT_RUNS = 0,    /* v_run_summary */
    QE_EXPORT_TOKENS = 1,  /* tokens: run_key, chunk, pos, target, logprob, argmax, topk, kld */
    QE_EXPORT_KLD = 2,     /* v_kld */
    QE_EXPORT_TIMINGS = 3, /* timings with their run's model, dataset and formats */
    QE_EXPORT_GENERATIONS = 4 /* one row per generated prompt and format: ids (hex of
                                 int32 LE), text, finish, speed, diverge_pos (v_gen_divergence) */
} qe_export_what;

/* "runs", "tokens", "kld", "timings", "generations"; QE_EINVAL otherwise. */
qe_status qe_report_export_parse(const char *name, qe_export_what *out);

/* Write a table as CSV (header first). */
qe_status qe_report_export(qe_store *st, qe_export_what what, FILE *out);

#endif
