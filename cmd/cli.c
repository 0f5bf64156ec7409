/* cli.c - exit codes and error printing shared by the subcommands. */
#include "cli.h"

#include <stdarg.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

qe_status qe_cli_parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        return qe_fail(QE_EINVAL, "'%s' is not an integer", s);
    *out = v;
    return QE_OK;
}

qe_status qe_cli_read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return qe_fail(QE_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    qe_status st = QE_OK;
    for (;;) {
        if (cap - n < 65536) {
            size_t nc = cap ? cap * 2 : 1 << 20;
            char *b = realloc(buf, nc + 1);
            if (!b) {
                st = qe_fail(QE_ENOMEM, "%s: out of memory after %zu bytes", path, n);
                break;
            }
            buf = b;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                st = qe_fail(QE_EIO, "%s: read error after %zu bytes", path, n);
            break;
        }
    }
    fclose(f);
    if (st) {
        free(buf);
        return st;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return QE_OK;
}
