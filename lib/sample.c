/* sample.c - next-token choice from device top-k candidates (see sample.h).
 * Workload: one call per generated token over at most 64 candidates; all
 * arithmetic in double so the choice does not hinge on float rounding.
 * Threading: no shared state. */
#include "sample.h"

#include <math.h>

qe_sample_opts qe_sample_opts_default(void)
{
    qe_sample_opts o = {.temp = 0.0f, .top_k = 40, .top_p = 1.0f, .seed = 0};
    return o;
}

qe_status qe_sample_check(const qe_sample_opts *o)
{
    if (!isfinite(o->temp) || o->temp < 0)
        return qe_fail(QE_EINVAL, "sampling: temperature %g must be a number >= 0", (double)o->temp);
    if (o->top_k < 0)
        return qe_fail(QE_EINVAL, "sampling: top-k %d must be >= 0", o->top_k);
    if (!(o->top_p > 0 && o->top_p <= 1))
        return qe_fail(QE_EINVAL, "sampling: top-p %g must be in (0, 1]", (double)o->top_p);
    return QE_OK;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t qe_sample_seed(uint64_t run_seed, uint64_t index)
{
    uint64_t a = run_seed, b = index ^ 0x5851F42D4C957F2Dull;
    uint64_t ha = splitmix64(&a);
    return ha ^ splitmix64(&b);
}

void qe_sample_rng_init(qe_sample_rng *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t qe_sample_next(qe_sample_rng *r)
{
    return splitmix64(&r->state);
}

double qe_sample_uniform(qe_sample_rng *r)
{
    return (double)(qe_sample_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

int qe_sample_pick(const qe_sample_opts *o, const float *logp, int n, qe_sample_rng *rng)
{
    if (o->temp <= 0 || n <= 1)
        return 0;
    int keep = o->top_k > 0 && o->top_k < n ? o->top_k : n;
    const double top = logp[0]; /* the largest: candidates are sorted */
    if (o->top_p < 1) {
        double z = 0;
        for (int i = 0; i < keep; i++)
            z += exp((double)logp[i] - top);
        double cum = 0;
        int k = 0;
        while (k < keep) {
            cum += exp((double)logp[k] - top) / z;
            k++;
            if (cum >= o->top_p)
                break;
        }
        keep = k;
    }
    const double inv_t = 1.0 / o->temp;
    double total = 0;
    for (int i = 0; i < keep; i++)
        total += exp(((double)logp[i] - top) * inv_t);
    const double u = qe_sample_uniform(rng) * total;
    double cum = 0;
    for (int i = 0; i < keep; i++) {
        cum += exp(((double)logp[i] - top) * inv_t);
        if (cum > u)
            return i;
    }
    return keep - 1; /* u rounded up to the total */
}
