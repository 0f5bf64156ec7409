/* status.h - qeval's one status type and its per-thread error message.
 *
 * Every library function that can fail returns qe_status. On failure it also
 * leaves a human-readable message (file, offset or line, what was expected)
 * in a thread-local buffer read with qe_errmsg(); the message of the most
 * recent qe_fail() on this thread wins. cmd/ turns statuses into exit codes.
 */
#ifndef QE_STATUS_H
#define QE_STATUS_H

#include <stdarg.h>
#include <stddef.h>

typedef enum qe_status {
    QE_OK = 0,
    QE_ENOMEM,       /* allocation failed */
    QE_EIO,          /* read/write/open failed (errno-level problem) */
    QE_ECORRUPT,     /* external input is malformed: model, dataset, job file */
    QE_EINVAL,       /* caller passed a bad argument or option */
    QE_EUNSUPPORTED, /* well-formed input that qeval does not handle (yet) */
    QE_ERANGE,       /* a value or size is out of the supported range */
    QE_ENOTFOUND,    /* a key, tensor, device or file that was asked for is absent */
    QE_ECL,          /* an OpenCL call failed */
    QE_EDB,          /* an SQLite call failed */
    QE_EINTERRUPTED, /* stopped by a signal or user request */
    QE_STATUS_COUNT
} qe_status;

/* Short stable name of a status ("ECORRUPT"); never NULL. */
const char *qe_status_str(qe_status s);

/* Record a printf-style message for this thread and return s unchanged, so
 * error paths read `return qe_fail(QE_ECORRUPT, "%s: offset %zu: ...", ...)`.
 * The message is kept to one line: control bytes (a newline in a quoted
 * token, say) are stored as \xNN. */
qe_status qe_fail(qe_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
qe_status qe_vfail(qe_status s, const char *fmt, va_list ap);

/* Prefix the current message with "prefix: " (adds context on the way up). */
qe_status qe_fail_prefix(qe_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Last message recorded on this thread ("" if none). Valid until the next
 * qe_fail on this thread. */
const char *qe_errmsg(void);
void qe_errclear(void);

/* Untrusted bytes s[0..n) made safe inside a one-line message: printable
 * ASCII kept, every other byte (and a backslash or quote) as \xNN, cut
 * after 48 bytes with "...". Written into buf[cap] (cap >= 8), returned. */
const char *qe_printable(const char *s, size_t n, char *buf, size_t cap);

/* Assertions are for qeval's own bugs only, never for bad input. */
void qe_assert_fail(const char *expr, const char *file, int line);
#define QE_ASSERT(e) ((e) ? (void)0 : qe_assert_fail(#e, __FILE__, __LINE__))

#endif
