/* metrics.c - perplexity and KLD statistics (see metrics.h).
 * Formulas follow llama.cpp's tools/perplexity: mean_and_uncertainty() gives
 * the standard error sqrt((<x²>-<x>²)/(N-1)), reported as 0 for N <= 10;
 * percentiles interpolate linearly between sorted neighbours. */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qe_ppl_init(qe_ppl *p) { memset(p, 0, sizeof *p); }

void qe_ppl_add(qe_ppl *p, double nll)
{
    p->sum_nll += nll;
    p->sum_nll2 += nll * nll;
    p->n++;
}

void qe_ppl_add_text(qe_ppl *p, double bytes, double words)
{
    p->sum_bytes += bytes;
    p->n_words += words;
}

qe_ppl_result qe_ppl_result_of(const qe_ppl *p)
{
    qe_ppl_result r = {0};
    r.n = p->n;
    if (p->n == 0)
        return r;
    double n = (double)p->n, mean = p->sum_nll / n;
    r.mean_nll = mean;
    r.ppl = exp(mean);
    double var = p->sum_nll2 / n - mean * mean;
    r.ppl_err = p->n > 1 && var > 0 ? r.ppl * sqrt(var / (n - 1)) : 0.0;
    r.word_ppl = p->n_words > 0 ? exp(p->sum_nll / p->n_words) : 0.0;
    r.byte_ppl = p->sum_bytes > 0 ? exp(p->sum_nll / p->sum_bytes) : 0.0;
    r.bits_per_byte = p->sum_bytes > 0 ? p->sum_nll / p->sum_bytes / log(2.0) : 0.0;
    return r;
}

static int is_space(unsigned char c)
{
    /* Python's \s on str also matches Unicode spaces; ASCII covers the
     * datasets qeval ships with, and multi-byte spaces are rare enough in
     * wikitext that they only nudge word counts. */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

double qe_count_words(const char *s, size_t n, int *in_word)
{
    double words = 0;
    for (size_t i = 0; i < n; i++) {
        int sp = is_space((unsigned char)s[i]);
        if (!sp && !*in_word)
            words++;
        *in_word = !sp;
    }
    return words;
}

/* ---- KLD ---- */
struct qe_kld {
    float *kld, *dp;
    size_t n, cap;
    double sum_nll, sum_nll2, sum_nll_base, sum_nll_base2, sum_nll_nll_base;
    double sum_kld, sum_kld2, sum_dp, sum_dp2, sum_dp4;
    uint64_t same_top;
};

const double qe_kld_pct_levels[8] = {0.999, 0.99, 0.95, 0.90, 0.10, 0.05, 0.01, 0.001};
const double qe_dp_pct_levels[10] = {0.999, 0.99, 0.95, 0.90, 0.75, 0.25, 0.10, 0.05, 0.01, 0.001};

qe_status qe_kld_new(qe_kld **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? QE_OK : qe_fail(QE_ENOMEM, "out of memory for KLD statistics");
}

void qe_kld_free(qe_kld *k)
{
    if (!k)
        return;
    free(k->kld);
    free(k->dp);
    free(k);
}

uint64_t qe_kld_count(const qe_kld *k) { return k->n; }

qe_status qe_kld_add(qe_kld *k, const qe_kld_token *t)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4096;
        float *a = realloc(k->kld, cap * sizeof *a);
        if (!a)
            return qe_fail(QE_ENOMEM, "out of memory for %zu KLD values", cap);
        k->kld = a;
        float *b = realloc(k->dp, cap * sizeof *b);
        if (!b)
            return qe_fail(QE_ENOMEM, "out of memory for %zu Δp values", cap);
        k->dp = b;
        k->cap = cap;
    }
    double dp = exp(-t->nll_q) - exp(-t->nll_base);
    k->kld[k->n] = (float)t->kld;
    k->dp[k->n] = (float)dp;
    k->n++;
    k->sum_nll += t->nll_q;
    k->sum_nll2 += t->nll_q * t->nll_q;
    k->sum_nll_base += t->nll_base;
    k->sum_nll_base2 += t->nll_base * t->nll_base;
    k->sum_nll_nll_base += t->nll_q * t->nll_base;
    k->sum_kld += t->kld;
    k->sum_kld2 += t->kld * t->kld;
    k->sum_dp += dp;
    k->sum_dp2 += dp * dp;
    k->sum_dp4 += dp * dp * dp * dp;
    k->same_top += t->same_top != 0;
    return QE_OK;
}

static qe_stat mean_unc(double sum, double sum2, size_t n)
{
    qe_stat s = {0, 0};
    if (n < 1)
        return s;
    s.mean = sum / (double)n;
    double v = sum2 / (double)n - s.mean * s.mean;
    s.err = v > 0 && n > 10 ? sqrt(v / (double)(n - 1)) : 0.0;
    return s;
}

double qe_percentile_sorted(const float *v, size_t n, double fraction)
{
    if (n == 0)
        return 0.0;
    if (fraction <= 0)
        return v[0];
    if (fraction >= 1)
        return v[n - 1];
    double p = fraction * (double)(n - 1);
    size_t ip = (size_t)p;
    p -= (double)ip;
    size_t hi = ip + 1 < n ? ip + 1 : n - 1;
    return (1 - p) * v[ip] + p * v[hi];
}

static double median_sorted(const float *v, size_t n)
{
    if (n == 0)
        return 0.0;
    return n % 2 ? v[n / 2] : 0.5 * ((double)v[n / 2] + (double)v[n / 2 - 1]);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

qe_status qe_kld_summarize(const qe_kld *k, qe_kld_summary *o)
{
    memset(o, 0, sizeof *o);
    size_t n = k->n;
    o->n = n;
    if (n == 0)
        return QE_OK;
    float *ks = malloc(n * sizeof *ks), *ds = malloc(n * sizeof *ds);
    if (!ks || !ds) {
        free(ks);
        free(ds);
        return qe_fail(QE_ENOMEM, "out of memory sorting %zu KLD values", n);
    }
    memcpy(ks, k->kld, n * sizeof *ks);
    memcpy(ds, k->dp, n * sizeof *ds);
    qsort(ks, n, sizeof *ks, cmp_float);
    qsort(ds, n, sizeof *ds, cmp_float);

    qe_stat lq = mean_unc(k->sum_nll, k->sum_nll2, n);
    qe_stat lb = mean_unc(k->sum_nll_base, k->sum_nll_base2, n);
    double dn = (double)n;
    double cov = n < 10 ? 0.0
                        : (k->sum_nll_nll_base / dn - (k->sum_nll / dn) * (k->sum_nll_base / dn)) /
                              (dn - 1);
    o->ppl_q = exp(lq.mean);
    o->ppl_q_err = o->ppl_q * lq.err;
    o->ppl_base = exp(lb.mean);
    o->ppl_base_err = o->ppl_base * lb.err;
    o->cor = lq.err > 0 && lb.err > 0 ? cov / (lq.err * lb.err) : 0.0;
    o->ln_ratio = lq.mean - lb.mean;
    double v = lq.err * lq.err + lb.err * lb.err - 2.0 * cov;
    o->ln_ratio_err = v > 0 ? sqrt(v) : 0.0;
    o->ppl_ratio = exp(o->ln_ratio);
    o->ppl_ratio_err = o->ppl_ratio * o->ln_ratio_err;
    o->ppl_diff = o->ppl_q - o->ppl_base;
    double pcov = o->ppl_q * o->ppl_base * cov;
    v = o->ppl_q_err * o->ppl_q_err + o->ppl_base_err * o->ppl_base_err - 2.0 * pcov;
    o->ppl_diff_err = v > 0 ? sqrt(v) : 0.0;

    o->kld = mean_unc(k->sum_kld, k->sum_kld2, n);
    o->kld_max = ks[n - 1];
    o->kld_min = ks[0];
    o->kld_median = median_sorted(ks, n);
    for (int i = 0; i < 8; i++)
        o->kld_pct[i] = qe_percentile_sorted(ks, n, qe_kld_pct_levels[i]);

    o->dp = mean_unc(k->sum_dp, k->sum_dp2, n);
    o->dp_max = ds[n - 1];
    o->dp_min = ds[0];
    o->dp_median = median_sorted(ds, n);
    for (int i = 0; i < 10; i++)
        o->dp_pct[i] = qe_percentile_sorted(ds, n, qe_dp_pct_levels[i]);
    qe_stat mse = mean_unc(k->sum_dp2, k->sum_dp4, n);
    o->dp_rms = sqrt(mse.mean);
    o->dp_rms_err = o->dp_rms > 0 ? 0.5 / o->dp_rms * mse.err : 0.0;

    o->same_top = (double)k->same_top / dn;
    o->same_top_err = n > 1 ? sqrt(o->same_top * (1 - o->same_top) / (dn - 1)) : 0.0;
    free(ks);
    free(ds);
    return QE_OK;
}
