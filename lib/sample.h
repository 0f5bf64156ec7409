/* sample.h - choosing the next token from the candidates the device returns.
 *
 * The device reduces each output row to its top-K ids and log-probs
 * (K <= QE_ENGINE_TOP_K_MAX = 64, lib/engine.h); the host picks a token from
 * them. Greedy (temp <= 0) takes the first candidate, the arg-max. Otherwise
 * llama.cpp's default chain order applies:
 *   1. top_k: keep the first top_k candidates (0 = all K returned);
 *   2. top_p: softmax of the kept log-probs (temperature 1), keep the
 *      shortest prefix whose probability sum reaches top_p (at least one);
 *   3. temperature: probabilities exp(logp_i / temp), renormalised over the
 *      kept candidates;
 *   4. draw u uniform in [0, 1) and take the first candidate whose
 *      cumulative probability exceeds u times the total.
 * Sampling never looks beyond the K candidates the device returned: with
 * top_k 0 or above K, tokens outside the device's top-K cannot be drawn
 * (their probability mass is usually tiny; temperatures above 1 make it
 * larger).
 *
 * Determinism: each sequence owns an RNG seeded from (run seed, prompt
 * index), advanced once per sampled token, so a sequence's tokens depend
 * only on its prompt, the model and the seed, never on which sequences it
 * was batched with.
 *
 * Threading: pure functions over caller-owned state.
 */
#ifndef QE_SAMPLE_H
#define QE_SAMPLE_H

#include <stdint.h>

#include "status.h"

typedef struct qe_sample_opts {
    float temp;    /* <= 0: greedy (default 0) */
    int top_k;     /* candidates kept, 0 = all returned (default 40) */
    float top_p;   /* nucleus mass in (0, 1] (default 1: off) */
    uint64_t seed; /* run seed (default 0) */
} qe_sample_opts;

qe_sample_opts qe_sample_opts_default(void);

/* QE_EINVAL (naming the option) for temp not finite or < 0, top_k < 0,
 * top_p outside (0, 1]. */
qe_status qe_sample_check(const qe_sample_opts *o);

/* The seed of sequence `index` of a run seeded `run_seed`: SplitMix64
 * mixing of both, so nearby indices give unrelated streams. */
uint64_t qe_sample_seed(uint64_t run_seed, uint64_t index);

/* A SplitMix64 generator. */
typedef struct qe_sample_rng {
    uint64_t state;
} qe_sample_rng;

void qe_sample_rng_init(qe_sample_rng *r, uint64_t seed);
uint64_t qe_sample_next(qe_sample_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double qe_sample_uniform(qe_sample_rng *r);

/* Pick among n >= 1 candidates given by log-prob, sorted descending (the
 * device's top-k order). Returns the chosen candidate's index in 0 .. n-1;
 * greedy returns 0 and leaves rng untouched, sampling draws exactly one
 * number from rng (none when n is 1). */
int qe_sample_pick(const qe_sample_opts *o, const float *logp, int n, qe_sample_rng *rng);

#endif
