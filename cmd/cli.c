/* cli.c - exit codes and error printing shared by the subcommands. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>

int qe_cli_exit_code(qe_status s)
{
    switch (s) {
    case QE_OK: return QE_EXIT_OK;
    case QE_EINVAL: return QE_EXIT_USAGE;
    case QE_ECORRUPT:
    case QE_EUNSUPPORTED: return QE_EXIT_INPUT;
    case QE_EINTERRUPTED: return QE_EXIT_INTERRUPTED;
    default: return QE_EXIT_FAIL;
    }
}

int qe_cli_report(const char *cmd, qe_status s)
{
    if (s != QE_OK)
        fprintf(stderr, "qeval %s: %s\n", cmd, *qe_errmsg() ? qe_errmsg() : qe_status_str(s));
    return qe_cli_exit_code(s);
}

int qe_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qeval %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'qeval %s --help'.\n", cmd);
    va_end(ap);
    return QE_EXIT_USAGE;
}
