/* status.c - status names and the thread-local error message.
 * Threading: each thread has its own message buffer; no locks. */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char errbuf[1024];

static const char *const names[QE_STATUS_COUNT] = {
    [QE_OK] = "OK",
    [QE_ENOMEM] = "ENOMEM",
    [QE_EIO] = "EIO",
    [QE_ECORRUPT] = "ECORRUPT",
    [QE_EINVAL] = "EINVAL",
    [QE_EUNSUPPORTED] = "EUNSUPPORTED",
    [QE_ERANGE] = "ERANGE",
    [QE_ENOTFOUND] = "ENOTFOUND",
    [QE_ECL] = "ECL",
    [QE_EDB] = "EDB",
    [QE_EINTERRUPTED] = "EINTERRUPTED",
};

const char *qe_status_str(qe_status s)
{
    if ((unsigned)s >= QE_STATUS_COUNT)
        return "EUNKNOWN";
    return names[s];
}

/* A message is one line whatever bytes its arguments quote (a token's text,
 * a CSV header's name): control bytes in errbuf become \xNN, cut at the
 * buffer's end. */
static void one_line(void)
{
    char tmp[sizeof errbuf];
    size_t o = 0;
    int any = 0;
    for (size_t i = 0; errbuf[i]; i++)
        any |= (unsigned char)errbuf[i] < 0x20 || errbuf[i] == 0x7f;
    if (!any)
        return;
    for (size_t i = 0; errbuf[i] && o + 5 < sizeof tmp; i++) {
        const unsigned char c = (unsigned char)errbuf[i];
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(tmp + o, sizeof tmp - o, "\\x%02x", c);
        else
            tmp[o++] = (char)c;
    }
    tmp[o] = '\0';
    memcpy(errbuf, tmp, o + 1);
}

qe_status qe_vfail(qe_status s, const char *fmt, va_list ap)
{
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    one_line();
    return s;
}

qe_status qe_fail(qe_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qe_vfail(s, fmt, ap);
    va_end(ap);
    return s;
}

qe_status qe_fail_prefix(qe_status s, const char *fmt, ...)
{
    char prefix[512], old[sizeof errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errbuf, sizeof old);
    /* Truncation is acceptable: the message is for humans. */
    size_t n = strlen(prefix);
    if (n > sizeof errbuf - 3)
        n = sizeof errbuf - 3;
    memcpy(errbuf, prefix, n);
    memcpy(errbuf + n, ": ", 2);
    size_t rest = sizeof errbuf - n - 3, m = strlen(old);
    if (m > rest)
        m = rest;
    memcpy(errbuf + n + 2, old, m);
    errbuf[n + 2 + m] = '\0';
    one_line();
    return s;
}

const char *qe_errmsg(void) { return errbuf; }

void qe_errclear(void) { errbuf[0] = '\0'; }

void qe_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "qeval: internal error: assertion '%s' failed at %s:%d\n",
            expr, file, line);
    abort();
}

const char *qe_printable(const char *s, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t k = 0; k < n && o + 8 < cap; k++) {
        unsigned char c = (unsigned char)s[k];
        if (k == 48) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    buf[o] = '\0';
    return buf;
}
