/* log.c - stderr logging and the progress line (see log.h).
 * Threading: all output under one mutex; the level is read racily on purpose
 * (it is set once at start-up). */
#define _POSIX_C_SOURCE 200809L
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int level = QE_LOG_NORMAL;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

void qe_log_set_level(int l) { level = l; }
int qe_log_level(void) { return level; }

static void vlog(int min, const char *tag, const char *fmt, va_list ap)
{
    if (level < min)
        return;
    pthread_mutex_lock(&mu);
    fputs(tag, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&mu);
}

#define LOGFN(name, min, tag)                                                  \
    void name(const char *fmt, ...)                                            \
    {                                                                          \
        va_list ap;                                                            \
        va_start(ap, fmt);                                                     \
        vlog(min, tag, fmt, ap);                                               \
        va_end(ap);                                                            \
    }
LOGFN(qe_log_info, QE_LOG_NORMAL, "")
LOGFN(qe_log_warn, QE_LOG_NORMAL, "warning: ")
LOGFN(qe_log_debug, QE_LOG_VERBOSE, "debug: ")

double qe_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fmt_eta(char *buf, size_t n, double s)
{
    if (s < 0 || s > 1e7)
        snprintf(buf, n, "--:--");
    else if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    else
        snprintf(buf, n, "%d:%02d", (int)s / 60, (int)s % 60);
}

static void print_line(qe_progress *p, uint64_t done, int final)
{
    double now = qe_now(), el = now - p->t0;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(p->total - (done < p->total ? done : p->total)) / rate : -1;
    char etab[32];
    fmt_eta(etab, sizeof etab, final ? el : eta);
    int tty = isatty(STDERR_FILENO);
    pthread_mutex_lock(&mu);
    fprintf(stderr, "%s%s: %llu/%llu tokens (%.1f%%), %.0f tokens/s, %s %s%s",
            tty ? "\r\033[K" : "", p->what, (unsigned long long)done,
            (unsigned long long)p->total,
            p->total ? 100.0 * (double)done / (double)p->total : 100.0, rate,
            final ? "elapsed" : "ETA", etab, (tty && !final) ? "" : "\n");
    fflush(stderr);
    pthread_mutex_unlock(&mu);
    p->last_print = now;
}

void qe_progress_begin(qe_progress *p, const char *what, uint64_t total)
{
    p->what = what;
    p->total = total;
    p->t0 = p->last_print = qe_now();
    p->active = level >= QE_LOG_NORMAL;
}

void qe_progress_update(qe_progress *p, uint64_t done)
{
    if (!p->active)
        return;
    double gap = isatty(STDERR_FILENO) ? 0.2 : 10.0;
    if (qe_now() - p->last_print >= gap)
        print_line(p, done, 0);
}

void qe_progress_end(qe_progress *p, uint64_t done)
{
    if (p->active)
        print_line(p, done, 1);
    p->active = 0;
}
