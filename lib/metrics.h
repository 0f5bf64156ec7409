/* metrics.h - perplexity and KL-divergence statistics, as llama-perplexity
 * computes them (REFERENCE.md "Perplexity, exactly" and "KL-divergence").
 *
 * Accumulators take one scored token at a time. Sums are plain doubles, so
 * callers must add tokens in a fixed order (chunk index, then position) to get
 * bit-identical results however chunks were batched on the device; the
 * runners do. Not thread-safe: one accumulator per thread or per run.
 */
#ifndef QE_METRICS_H
#define QE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* ---- perplexity ---- */
typedef struct qe_ppl {
    double sum_nll, sum_nll2; /* sum of -log p(target) and of its square */
    uint64_t n;               /* scored tokens */
    double sum_bytes, n_words;/* text of the scored tokens, for word/byte PPL */
} qe_ppl;

typedef struct qe_ppl_result {
    double ppl, ppl_err;     /* exp(mean nll) and PPL*sqrt((<nll²>-<nll>²)/(N-1)) */
    double mean_nll;
    uint64_t n;
    double word_ppl;         /* exp(sum nll / words), lm-eval-harness style */
    double byte_ppl;         /* exp(sum nll / bytes) */
    double bits_per_byte;    /* sum nll / bytes / ln 2 */
} qe_ppl_result;

void qe_ppl_init(qe_ppl *p);
void qe_ppl_add(qe_ppl *p, double nll);
/* Credit the text of scored tokens (bytes and whitespace-separated words). */
void qe_ppl_add_text(qe_ppl *p, double bytes, double words);
qe_ppl_result qe_ppl_result_of(const qe_ppl *p);

/* Words in a UTF-8 span, counted like lm-eval-harness's re.split(r"\s+")
 * on the text with empty pieces dropped. `*in_word` carries the state across
 * consecutive spans (start with 0) so a word split over tokens counts once. */
double qe_count_words(const char *s, size_t n, int *in_word);

/* ---- KL-divergence of a variant q against a base p ---- */
typedef struct qe_kld qe_kld; /* opaque: grows with scored tokens (2 floats each) */

typedef struct qe_kld_token {
    double kld;        /* sum_v p_v (log p_v - log q_v) */
    double nll_q;      /* -log q(target) */
    double nll_base;   /* -log p(target) */
    int same_top;      /* argmax q == argmax p */
} qe_kld_token;

typedef struct qe_stat {
    double mean, err;  /* mean and its standard error (0 when N <= 10) */
} qe_stat;

typedef struct qe_kld_summary {
    uint64_t n;
    double ppl_q, ppl_q_err, ppl_base, ppl_base_err;
    double ln_ratio, ln_ratio_err;   /* mean ln(PPL(Q)/PPL(base)) ± with covariance */
    double ppl_ratio, ppl_ratio_err; /* exp of the above */
    double ppl_diff, ppl_diff_err;   /* PPL(Q) - PPL(base) */
    double cor;                      /* correlation of per-token ln-probs */
    qe_stat kld;
    double kld_max, kld_min, kld_median;
    double kld_pct[8];               /* 99.9, 99, 95, 90, 10, 5, 1, 0.1 % */
    qe_stat dp;                      /* Δp = q(correct) - p(correct) */
    double dp_max, dp_min, dp_median;
    double dp_pct[10];               /* 99.9, 99, 95, 90, 75, 25, 10, 5, 1, 0.1 % */
    double dp_rms, dp_rms_err;
    double same_top, same_top_err;   /* fraction, ± sqrt(p(1-p)/(N-1)) */
} qe_kld_summary;

extern const double qe_kld_pct_levels[8];
extern const double qe_dp_pct_levels[10];

qe_status qe_kld_new(qe_kld **out);
void qe_kld_free(qe_kld *k);
qe_status qe_kld_add(qe_kld *k, const qe_kld_token *t);
uint64_t qe_kld_count(const qe_kld *k);
/* Statistics so far (sorts a copy of the per-token values). */
qe_status qe_kld_summarize(const qe_kld *k, qe_kld_summary *out);

/* Percentile of sorted values with llama-perplexity's linear interpolation. */
double qe_percentile_sorted(const float *v, size_t n, double fraction);

#endif
