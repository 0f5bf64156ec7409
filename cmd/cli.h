/* cli.h - what every subcommand shares: exit codes and error reporting.
 *
 * Exit codes scripts can rely on:
 *   0 success; 1 runtime failure (I/O, OpenCL, SQLite); 2 usage error;
 *   3 invalid input file (model, dataset, job file); 130 interrupted. */
#ifndef QE_CLI_H
#define QE_CLI_H

#include <stddef.h>

#include "status.h"

enum { QE_EXIT_OK = 0, QE_EXIT_FAIL = 1, QE_EXIT_USAGE = 2, QE_EXIT_INPUT = 3,
       QE_EXIT_INTERRUPTED = 130 };

/* Map a status to an exit code. */
int qe_cli_exit_code(qe_status s);
/* Print "qeval CMD: <qe_errmsg()>" to stderr and return the exit code. */
int qe_cli_report(const char *cmd, qe_status s);
/* Print "qeval CMD: msg" plus a hint to use --help; returns QE_EXIT_USAGE. */
int qe_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parse a whole decimal integer (no trailing junk); QE_EINVAL otherwise. */
qe_status qe_cli_parse_long(const char *s, long *out);
/* Read a whole file into a malloc'ed, NUL-terminated buffer. QE_EIO names
 * the file and the system error. */
qe_status qe_cli_read_file(const char *path, char **out, size_t *len);

/* Subcommands: each parses its own argv (argv[0] is the subcommand name). */
int qe_cmd_devices(int argc, char **argv);
int qe_cmd_inspect(int argc, char **argv); /* cmd/inspect.c */
int qe_cmd_run(int argc, char **argv);     /* cmd/run.c */
int qe_cmd_merge(int argc, char **argv);   /* cmd/merge.c */
int qe_cmd_compare(int argc, char **argv); /* cmd/report.c */
int qe_cmd_export(int argc, char **argv);  /* cmd/report.c */
int qe_cmd_sql(int argc, char **argv);     /* cmd/report.c */
int qe_cmd_perplexity(int argc, char **argv); /* cmd/perplexity.c */
int qe_cmd_tokenize(int argc, char **argv);   /* cmd/tokenize.c */
int qe_cmd_detokenize(int argc, char **argv); /* cmd/tokenize.c */
int qe_cmd_quantize(int argc, char **argv); /* cmd/quantize.c */
int qe_cmd_generate(int argc, char **argv); /* cmd/generate.c */
int qe_cmd_bench(int argc, char **argv);    /* cmd/bench.c */
int qe_cmd_synth(int argc, char **argv);    /* cmd/synth.c */

#endif
