/* log.h - messages on stderr and the one-line progress display.
 *
 * Levels: QE_LOG_QUIET prints only errors, NORMAL adds warnings/info, VERBOSE
 * adds debug. The progress line is redrawn in place (\r) when stderr is a
 * terminal and printed at most every few seconds otherwise, so logs stay short.
 * Thread-safe: one mutex serialises all output.
 */
#ifndef QE_LOG_H
#define QE_LOG_H

#include <stdint.h>

enum qe_log_level { QE_LOG_QUIET = 0, QE_LOG_NORMAL = 1, QE_LOG_VERBOSE = 2 };

void qe_log_set_level(int level);
int qe_log_level(void);

void qe_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void qe_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void qe_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double qe_now(void);

/* Progress over `total` units (tokens). Call qe_progress_update with the units
 * done so far; it shows done/total, units/s and an ETA. */
typedef struct qe_progress {
    const char *what;
    uint64_t total;
    double t0, last_print;
    int active;
} qe_progress;

void qe_progress_begin(qe_progress *p, const char *what, uint64_t total);
void qe_progress_update(qe_progress *p, uint64_t done);
void qe_progress_end(qe_progress *p, uint64_t done);

#endif
