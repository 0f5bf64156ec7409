/* testutil.h - helpers shared by the Check suites: data paths, temp dirs,
 * the shared OpenCL context, and the device-vs-reference comparisons of the
 * engine suites. Helpers that check something fail the current test with
 * ck_assert (so they are called from tests only). */
#ifndef QE_TESTUTIL_H
#define QE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* Path under $QEVAL_DATA (default ../shared/data) into a static buffer
 * (one per call site is fine: the buffer is rotated over 8 slots). */
const char *qe_test_data(const char *rel);
/* A fresh empty directory under $TMPDIR, removed by qe_test_rmtree. */
char *qe_test_tmpdir(void);
void qe_test_rmtree(const char *dir);
/* Write bytes to dir/name; returns the malloc'ed full path. */
char *qe_test_write(const char *dir, const char *name, const void *data, size_t n);

/* ---- the OpenCL context shared by a test case's tests ----
 * An OpenCL context does not survive fork() (PoCL hangs in the child), so the
 * unchecked fixture (qe_test_cl_setup/teardown, run in the runner process)
 * only prepares a scratch program-cache directory and points
 * QEVAL_CACHE_DIR at it; qe_test_cl() opens the context lazily, once per
 * process (once per test when Check forks, once per case with CK_FORK=no). */
struct qe_cl;
void qe_test_cl_setup(void);
void qe_test_cl_teardown(void);
struct qe_cl *qe_test_cl(void);
const char *qe_test_cl_cache_dir(void); /* the scratch cache directory */

/* ---- random inputs and models for the engine suites ---- */

/* A fixed-seed xorshift stream (one per process): the same seed gives the
 * same inputs on every run. */
void qe_test_rng_seed(uint64_t seed);
uint32_t qe_test_rnd_u32(void);
double qe_test_rnd_unit(void); /* uniform in [-1, 1) */
/* n token ids uniform in [0, n_vocab). */
void qe_test_rnd_tokens(int32_t *t, size_t n, int n_vocab);
/* qe_model_open of qe_test_data(rel), asserted to succeed. */
struct qe_model *qe_test_model(const char *rel);
/* An engine on the shared context with options o, asserted to open. */
qe_engine *qe_test_engine(const struct qe_model *m, const qe_engine_opts *o);
/* The same on context cl (a profiled one, say). */
qe_engine *qe_test_engine_on(struct qe_cl *cl, const struct qe_model *m, const qe_engine_opts *o);
/* The default options but these positions, sequences, top-k and K/V cache
 * formats, and an engine with them. */
qe_engine_opts qe_test_opts_kv(int n_ctx, int n_seq, int top_k, qe_kv_format kk, qe_kv_format kv);
qe_engine *qe_test_engine_kv(const struct qe_model *m, int n_ctx, int n_seq, int top_k,
                             qe_kv_format kk, qe_kv_format kv);

/* ---- engine outputs (check_engine, check_engine_formats) ---- */

/* Host buffers for the per-row outputs of one prefill, poisoned at creation
 * (floats NaN, ids INT32_MIN) so that a row the device never wrote shows. */
typedef struct qe_test_res {
    int rows, k;          /* output rows; top-k entries per row */
    float *lse, *tlp;     /* [rows] log-sum-exp, target log-prob */
    int32_t *am;          /* [rows] arg-max */
    int32_t *tki;         /* [rows * k] top-k ids */
    float *tkp;           /* [rows * k] top-k log-probs */
    qe_engine_out out;    /* points at the buffers above */
} qe_test_res;

/* Allocate and poison r for `rows` rows of k top-k entries (asserts on
 * allocation failure). */
void qe_test_res_init(qe_test_res *r, int rows, int k);
void qe_test_res_free(qe_test_res *r);
/* The first output of row ra of a that differs bit for bit from row rb of
 * b ("lse", "target log-prob", "arg-max", "top-k ids", "top-k log-probs"),
 * or NULL when the rows are identical. Target log-probs that are both NaN
 * (no target) count as equal. a and b must have the same k. */
const char *qe_test_res_row_diff(const qe_test_res *a, int ra, const qe_test_res *b, int rb);
/* Assert that a and b have the same shape and identical rows
 * (qe_test_res_row_diff); `what` names the comparison in the message. */
void qe_test_res_same(const qe_test_res *a, const qe_test_res *b, const char *what);

/* ---- the double-precision reference (lib/ref.h) side ----
 * Statistics computed here in double from qe_ref_step's logits,
 * independently of the kernels. */

/* Indices of the k largest of z[0..n) (ties: lower index first),
 * descending. O(n k): for test-sized vocabularies. */
void qe_test_ref_top(const double *z, int n, int k, int *ids);
/* log(sum(exp(z[0..n)))), shifted by the maximum. */
double qe_test_ref_lse(const double *z, int n);

/* Check one device row against reference logits z[0..nv): |dev_lse - lse|
 * < tol, each top-k log-prob tkp[j] within tol of z[ids[j]] - lse, and each
 * top-k id tki[j] equal to ids[j] unless a reference neighbour (j - 1 or
 * j + 1) is within tol (a near-tie: either order is right). ids and lse come
 * from qe_test_ref_top (at least min(k + 1, nv) entries) and
 * qe_test_ref_lse. `where` names the row in messages. Returns the number of
 * ids compared. */
int qe_test_check_row(const double *z, int nv, const int *ids, double lse, float dev_lse,
                      const float *tkp, const int32_t *tki, int k, double tol, const char *where);
/* Assert |dz[i] - z[i]| < tol for every i < nv (device logits read back). */
void qe_test_check_logits(const float *dz, const double *z, int nv, double tol, const char *where);

/* Running |device - reference| differences over rows. */
typedef struct qe_test_diff {
    double max_lse, max_tlp, sum_tlp; /* absolute, on log-sum-exp and target log-probs */
    int n;                            /* rows added */
} qe_test_diff;

/* Add one row's |d lse| and |d target log-prob| (both asserted finite). */
void qe_test_diff_add(qe_test_diff *d, int row, double d_lse, double d_tlp);
double qe_test_diff_mean(const qe_test_diff *d); /* mean |d tlp|; 0 with no rows */
/* The criteria the prefill and decode suites apply to a KV-cache format
 * pair named kk/kv: `same` is the run against a reference with the same
 * cache formats, vs_f32 against the f32-cache reference. With vs_f32 NULL
 * (the f32 cache itself) both maxima must be below 1e-4; otherwise the mean
 * must be tiny (<= 2e-5) or well below the distance to f32 (<= 0.2 of it),
 * with mean <= 5e-4 and max <= 2e-2 (rounding of K/V may flip a rare code). */
void qe_test_check_kv_diff(const char *kk, const char *kv, const qe_test_diff *same,
                           const qe_test_diff *vs_f32);

/* ---- in-memory models with random f32 weights (check_arch, check_engine_arch) ---- */

typedef struct qe_test_rmodel {
    qe_hparams hp;
    qe_weights w;
    float *bufs[512]; /* every tensor's data, freed by qe_test_rmodel_free */
    int n_bufs;
    qe_model *m;      /* NULL until qe_test_rmodel_build */
} qe_test_rmodel;

/* Random weights for hp (its switches decide which optional tensors exist),
 * from a 64-bit LCG seeded with seed; matrices fan-in scaled so activations
 * stay O(1). r->m stays NULL: tests may edit r->w first. */
void qe_test_rmodel_init(qe_test_rmodel *r, const qe_hparams *hp, uint64_t seed);
/* (Re)build r->m from r->hp and r->w (asserted to succeed). */
void qe_test_rmodel_build(qe_test_rmodel *r, const char *name);
void qe_test_rmodel_free(qe_test_rmodel *r);
/* n token ids in [0, nv) from the same LCG, reseeded with seed. */
void qe_test_rmodel_tokens(int32_t *tok, int n, int nv, uint64_t seed);

#endif
