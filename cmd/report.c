/* report.c - `qeval compare`, `qeval export`, `qeval sql`: read a results
 * database (opened read-only) and print it (lib/report.h does the work).
 *
 * Threading: single-threaded commands.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "report.h"
#include "store.h"

static const char *exit_text =
    "exit: 0 ok; 1 the database cannot be read (missing, locked, I/O); 2 usage\n"
    "(including SQL that does not compile or writes); 3 not a qeval database.\n";

/* Common options: --db PATH, --csv, --help. Returns -1 to go on, else an
 * exit code. Unknown options are left for the caller (*i unchanged). */
static int common_opt(const char *cmd, int argc, char **argv, int *i, const char **db, int *csv,
                      void (*usage)(FILE *))
{
    const char *a = argv[*i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        usage(stdout);
        return QE_EXIT_OK;
    }
    if (!strcmp(a, "--db")) {
        if (*i + 1 >= argc)
            return qe_cli_usage_error(cmd, "--db needs a path");
        *db = argv[++*i];
        return -2;
    }
    if (csv && !strcmp(a, "--csv")) {
        *csv = 1;
        return -2;
    }
    return -1;
}

static int open_ro(const char *cmd, const char *db, qe_store **st)
{
    qe_status r = qe_store_open(db, QE_STORE_READONLY, 0, st);
    return r == QE_OK ? -1 : qe_cli_report(cmd, r);
}

/* ---- compare ---- */

static void compare_usage(FILE *f)
{
    fprintf(f,
            "usage: qeval compare --db PATH [--ref RUN] [--csv]\n\n"
            "Prints the format comparison from a results database: for every model,\n"
            "dataset and context, each run beside its reference run: PPL +- its error\n"
            "(as llama-perplexity computes it), PPL change in %% over the chunks both runs\n"
            "hold, mean and 99th-percentile KL-divergence against the reference, how often\n"
            "the most likely token agrees (same top), bits per weight, weight size and\n"
            "tokens per second.\n\n"
            "  --db PATH   the database (qeval run writes results/qeval.db by default)\n"
            "  --ref RUN   compare every run of the same dataset and n_ctx against this run\n"
            "              (a run key or its first 4+ hex digits, see the 'run' column)\n"
            "  --csv       the same rows as CSV with raw numbers\n\n%s", exit_text);
}

int qe_cmd_compare(int argc, char **argv)
{
    const char *db = NULL, *ref = NULL;
    int csv = 0;
    for (int i = 1; i < argc; i++) {
        int rc = common_opt("compare", argc, argv, &i, &db, &csv, compare_usage);
        if (rc >= 0)
            return rc;
        if (rc == -2)
            continue;
        if (!strcmp(argv[i], "--ref")) {
            if (i + 1 >= argc)
                return qe_cli_usage_error("compare", "--ref needs a run key");
            ref = argv[++i];
        } else {
            return qe_cli_usage_error("compare", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!db)
        return qe_cli_usage_error("compare", "--db PATH is required");
    qe_store *st;
    int rc = open_ro("compare", db, &st);
    if (rc >= 0)
        return rc;
    qe_status r = qe_report_compare(st, ref, csv ? QE_REPORT_CSV : QE_REPORT_TABLE, stdout);
    qe_store_close(st);
    return qe_cli_report("compare", r);
}

/* ---- export ---- */

static void export_usage(FILE *f)
{
    fprintf(f,
            "usage: qeval export --db PATH --what runs|tokens|kld|timings|generations [--csv OUT]\n\n"
            "Writes one table of a results database as CSV (RFC 4180; a header row; text\n"
            "quoted, numbers as stored with 17 significant digits, empty for NULL):\n"
            "  runs     one row per run (view v_run_summary)\n"
            "  tokens   one row per scored position: run_key, chunk, pos, target, logprob,\n"
            "           argmax, topk (JSON [[id, logprob], ...]), kld\n"
            "  kld      KL-divergence summaries against the reference (view v_kld)\n"
            "  timings  seconds per run, session and phase\n"
            "  generations  one row per generated prompt and format ([generate] jobs):\n"
            "           ids (hex, int32 LE), text, finish, speed, diverge_pos\n\n"
            "  --db PATH     the database\n"
            "  --what TABLE  which table\n"
            "  --csv OUT     write to OUT (replaced) instead of standard output\n\n%s",
            exit_text);
}

int qe_cmd_export(int argc, char **argv)
{
    const char *db = NULL, *what = NULL, *outp = NULL;
    for (int i = 1; i < argc; i++) {
        int rc = common_opt("export", argc, argv, &i, &db, NULL, export_usage);
        if (rc >= 0)
            return rc;
        if (rc == -2)
            continue;
        if (!strcmp(argv[i], "--what") || !strcmp(argv[i], "--csv")) {
            if (i + 1 >= argc)
                return qe_cli_usage_error("export", "%s needs a value", argv[i]);
            if (!strcmp(argv[i], "--what"))
                what = argv[++i];
            else
                outp = argv[++i];
        } else {
            return qe_cli_usage_error("export", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!db || !what)
        return qe_cli_usage_error("export", "--db PATH and --what TABLE are required");
    qe_export_what w;
    if (qe_report_export_parse(what, &w) != QE_OK)
        return qe_cli_usage_error("export", "%s", qe_errmsg());
    qe_store *st;
    int rc = open_ro("export", db, &st);
    if (rc >= 0)
        return rc;
    FILE *out = stdout;
    qe_status r = QE_OK;
    if (outp && !(out = fopen(outp, "w")))
        r = qe_fail(QE_EIO, "%s: cannot write: %s", outp, strerror(errno));
    if (r == QE_OK)
        r = qe_report_export(st, w, out);
    if (out && out != stdout && fclose(out) != 0 && r == QE_OK)
        r = qe_fail(QE_EIO, "%s: write failed: %s", outp, strerror(errno));
    qe_store_close(st);
    return qe_cli_report("export", r);
}

/* ---- sql ---- */

static void sql_usage(FILE *f)
{
    fprintf(f,
            "usage: qeval sql --db PATH [--csv] \"SELECT ...\"\n\n"
            "Runs one read-only SQL statement on a results database and prints the rows\n"
            "as an aligned table (or CSV). Tables and views are described in README.md\n"
            "(\"Results database\"); e.g.\n"
            "  qeval sql --db results/qeval.db \"SELECT model, weights, kv_k, ppl FROM v_run_summary\"\n\n"
            "  --db PATH  the database (opened read-only: statements that write fail)\n"
            "  --csv      CSV instead of a table\n\n%s", exit_text);
}

int qe_cmd_sql(int argc, char **argv)
{
    const char *db = NULL, *sql = NULL;
    int csv = 0;
    for (int i = 1; i < argc; i++) {
        int rc = common_opt("sql", argc, argv, &i, &db, &csv, sql_usage);
        if (rc >= 0)
            return rc;
        if (rc == -2)
            continue;
        if (argv[i][0] == '-' && argv[i][1] == '-')
            return qe_cli_usage_error("sql", "unknown option '%s'", argv[i]);
        if (sql)
            return qe_cli_usage_error("sql", "one SQL statement only (quote it)");
        sql = argv[i];
    }
    if (!db || !sql)
        return qe_cli_usage_error("sql", "--db PATH and a statement are required");
    qe_store *st;
    int rc = open_ro("sql", db, &st);
    if (rc >= 0)
        return rc;
    qe_status r = qe_report_query(st, sql, csv ? QE_REPORT_CSV : QE_REPORT_TABLE, stdout);
    qe_store_close(st);
    return qe_cli_report("sql", r);
}
