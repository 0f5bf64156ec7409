/* store_chunk.c - the per-chunk writes of the results store: chunk rows
 * with their token rows (top-k as JSON via jansson), zlib-compressed f16
 * logits, KLD summaries and timings (see store.h).
 *
 * Threading: as store.c, a handle is used by one thread at a time (the
 * writer thread in qeval run). Workload: one BEGIN IMMEDIATE transaction
 * per chunk holding n_scored token rows (255 at n_ctx 512).
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "dtype.h"
#include "store.h"
#include "store_internal.h"

#define MAX_VOCAB (1 << 24)

/* ---- chunks ---- */

static qe_status check_chunk(const qe_store_chunk *c)
{
    if (c->chunk < 0 || c->chunk >= QE_STORE_MAX_CHUNKS)
        return qe_fail(QE_EINVAL, "chunk %" PRId64 ": index out of range", c->chunk);
    if (c->n_scored < 0 || c->first < 0)
        return qe_fail(QE_EINVAL, "chunk %" PRId64 ": first %d, n_scored %d: expected >= 0",
                       c->chunk, c->first, c->n_scored);
    if (c->n_scored > 0 && (!c->target || !c->logprob || !c->argmax))
        return qe_fail(QE_EINVAL, "chunk %" PRId64 ": target, logprob and argmax are required",
                       c->chunk);
    if (c->top_k < 0 || c->top_k > QE_STORE_MAX_TOP_K ||
        (c->top_k && (!c->topk_id || !c->topk_logprob)))
        return qe_fail(QE_EINVAL, "chunk %" PRId64 ": top_k %d: expected 0 .. %d with both "
                       "top-k arrays", c->chunk, c->top_k, QE_STORE_MAX_TOP_K);
    if (!isfinite(c->seconds) || c->seconds < 0)
        return qe_fail(QE_EINVAL, "chunk %" PRId64 ": seconds %g: expected a finite value >= 0",
                       c->chunk, c->seconds);
    for (int j = 0; j < c->n_scored; j++)
        if (isnan(c->logprob[j]) || c->logprob[j] > 0)
            return qe_fail(QE_EINVAL, "chunk %" PRId64 ": logprob[%d] = %g: expected a log "
                           "probability (<= 0)", c->chunk, j, (double)c->logprob[j]);
    for (int j = 0; c->top_k && c->topk_json && j < c->n_scored; j++)
        if (!c->topk_json[j])
            return qe_fail(QE_EINVAL, "chunk %" PRId64 ": topk_json[%d] is NULL", c->chunk, j);
    if (c->n_logits < 0 || (c->n_logits && (!c->logit_pos || !c->logits || c->n_vocab < 1 ||
                                            c->n_vocab > MAX_VOCAB)))
        return qe_fail(QE_EINVAL, "chunk %" PRId64 ": %d logit rows of n_vocab %d: expected "
                       "positions, logits and 1 <= n_vocab <= %d", c->chunk, c->n_logits,
                       c->n_vocab, MAX_VOCAB);
    for (int i = 0; i < c->n_logits; i++)
        if (c->logit_pos[i] < c->first || c->logit_pos[i] >= c->first + c->n_scored)
            return qe_fail(QE_EINVAL, "chunk %" PRId64 ": logit position %d outside the scored "
                           "positions %d .. %d", c->chunk, c->logit_pos[i], c->first,
                           c->first + c->n_scored - 1);
    return QE_OK;
}

char *qe_store_topk_json(const int32_t *id, const float *lp, int k)
{
    json_t *a = json_array();
    for (int i = 0; a && i < k; i++) {
        json_t *e = json_array();
        if (!e || json_array_append_new(e, json_integer(id[i])) ||
            json_array_append_new(e, isfinite(lp[i]) ? json_real(lp[i]) : json_null()) ||
            json_array_append_new(a, e)) {
            json_decref(a);
            return NULL;
        }
    }
    char *s = a ? json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(a);
    return s;
}

static qe_status put_logits(qe_store *st, const char *run_key, const qe_store_chunk *c, int i)
{
    size_t n = (size_t)c->n_vocab;
    uint8_t *half = malloc(2 * n);
    uLongf zcap = compressBound((uLong)(2 * n));
    uint8_t *z = malloc(zcap);
    qe_status r = QE_OK;
    if (!half || !z) {
        r = qe_fail(QE_ENOMEM, "%s: out of memory for logits", st->path);
        goto done;
    }
    const float *row = c->logits + (size_t)i * n;
    for (size_t v = 0; v < n; v++) {
        uint16_t h = qe_f32_to_f16(row[v]);
        half[2 * v] = (uint8_t)h;
        half[2 * v + 1] = (uint8_t)(h >> 8);
    }
    int zr = compress2(z, &zcap, half, (uLong)(2 * n), 6);
    if (zr != Z_OK) {
        r = qe_fail(QE_ENOMEM, "%s: zlib compress2 failed (%d)", st->path, zr);
        goto done;
    }
    sqlite3_stmt *s = NULL;
    r = qe_store__stmt(st, S_LOGITS, &s);
    if (r != QE_OK)
        goto done;
    qe_store__bind_text(s, 1, run_key);
    sqlite3_bind_int64(s, 2, c->chunk);
    sqlite3_bind_int(s, 3, c->logit_pos[i]);
    sqlite3_bind_int(s, 4, c->n_vocab);
    sqlite3_bind_blob(s, 5, z, (int)zcap, SQLITE_STATIC);
    r = qe_store__step_done(st, s, "storing logits");
done:
    free(half);
    free(z);
    return r;
}

qe_status qe_store_put_chunk(qe_store *st, const char *run_key, const char *session_key,
                             const qe_store_chunk *c, int *written)
{
    if (written)
        *written = 0;
    qe_status r = qe_store__need_key("run key", run_key);
    if (r == QE_OK)
        r = qe_store__need_key("session key", session_key);
    if (r == QE_OK)
        r = check_chunk(c);
    if (r != QE_OK)
        return r;
    double s1 = 0, s2 = 0;
    int64_t top1 = 0;
    for (int j = 0; j < c->n_scored; j++) {
        double nll = -(double)c->logprob[j];
        s1 += nll;
        s2 += nll * nll;
        top1 += c->argmax[j] == c->target[j];
    }
    r = qe_store__begin(st, "storing a chunk");
    if (r != QE_OK)
        return r;
    sqlite3_stmt *s = NULL;
    r = qe_store__stmt(st, S_CHUNK, &s);
    if (r != QE_OK)
        goto done;
    qe_store__bind_text(s, 1, run_key);
    sqlite3_bind_int64(s, 2, c->chunk);
    sqlite3_bind_int(s, 3, c->first);
    sqlite3_bind_int(s, 4, c->n_scored);
    sqlite3_bind_double(s, 5, s1);
    sqlite3_bind_double(s, 6, s2);
    sqlite3_bind_int64(s, 7, top1);
    sqlite3_bind_double(s, 8, c->seconds);
    qe_store__bind_text(s, 9, session_key);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        sqlite3_reset(s);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            r = qe_fail(QE_ENOTFOUND, "%s: chunk %" PRId64 ": run %s or session %s is not stored",
                        st->path, c->chunk, run_key, session_key);
        else
            r = qe_store_fail(st, rc, "storing a chunk");
        goto done;
    }
    sqlite3_reset(s);
    int fresh = sqlite3_changes(st->db) > 0; /* 0: stored before, an idempotent no-op */
    for (int j = 0; fresh && j < c->n_scored && !(c->flags & QE_STORE_CHUNK_NO_TOKENS); j++) {
        r = qe_store__stmt(st, S_TOKEN, &s);
        if (r != QE_OK)
            goto done;
        qe_store__bind_text(s, 1, run_key);
        sqlite3_bind_int64(s, 2, c->chunk);
        sqlite3_bind_int(s, 3, c->first + j);
        sqlite3_bind_int(s, 4, c->target[j]);
        if (isfinite(c->logprob[j]))
            sqlite3_bind_double(s, 5, c->logprob[j]);
        sqlite3_bind_int(s, 6, c->argmax[j]);
        if (c->top_k && c->topk_json) {
            sqlite3_bind_text(s, 7, c->topk_json[j], -1, SQLITE_STATIC);
        } else if (c->top_k) {
            char *js = qe_store_topk_json(c->topk_id + (size_t)j * c->top_k,
                                          c->topk_logprob + (size_t)j * c->top_k, c->top_k);
            if (!js) {
                r = qe_fail(QE_ENOMEM, "%s: out of memory for top-k JSON", st->path);
                goto done;
            }
            sqlite3_bind_text(s, 7, js, -1, free);
        }
        if (c->kld && isfinite(c->kld[j]))
            sqlite3_bind_double(s, 8, c->kld[j]);
        r = qe_store__step_done(st, s, "storing a token");
        if (r != QE_OK)
            goto done;
    }
    for (int i = 0; fresh && i < c->n_logits && r == QE_OK; i++)
        r = put_logits(st, run_key, c, i);
    if (r == QE_OK)
        r = qe_store__commit(st, "storing a chunk");
    if (r == QE_OK && written)
        *written = fresh;
done:
    if (r != QE_OK)
        qe_store__rollback(st);
    return r;
}

qe_status qe_store_get_logits(qe_store *st, const char *run_key, int64_t chunk, int pos,
                              float **out, int *n_vocab)
{
    *out = NULL;
    *n_vocab = 0;
    sqlite3_stmt *s = NULL;
    qe_status r = qe_store__stmt(st, S_LOGITS_GET, &s);
    if (r != QE_OK)
        return r;
    qe_store__bind_text(s, 1, run_key);
    sqlite3_bind_int64(s, 2, chunk);
    sqlite3_bind_int(s, 3, pos);
    uint8_t *half = NULL;
    float *f = NULL;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        r = qe_fail(QE_ENOTFOUND, "%s: no logits stored for run %s chunk %" PRId64 " position %d",
                    st->path, run_key, chunk, pos);
        goto done;
    }
    if (rc != SQLITE_ROW) {
        r = qe_store_fail(st, rc, "reading logits");
        goto done;
    }
    int64_t nv = sqlite3_column_int64(s, 0);
    const char *codec = (const char *)sqlite3_column_text(s, 1);
    if (nv < 1 || nv > MAX_VOCAB || !codec || strcmp(codec, "zlib-f16le")) {
        r = qe_fail(QE_ECORRUPT, "%s: logits of run %s chunk %" PRId64 " position %d: n_vocab %"
                    PRId64 ", codec '%s': expected 1 .. %d and 'zlib-f16le'", st->path, run_key,
                    chunk, pos, nv, codec ? codec : "", MAX_VOCAB);
        goto done;
    }
    const void *blob = sqlite3_column_blob(s, 2);
    int blen = sqlite3_column_bytes(s, 2);
    uLongf hlen = (uLongf)(2 * nv);
    half = malloc((size_t)hlen);
    f = malloc((size_t)nv * sizeof *f);
    if (!half || !f) {
        r = qe_fail(QE_ENOMEM, "%s: out of memory for logits", st->path);
        goto done;
    }
    int zr = uncompress(half, &hlen, blob, (uLong)blen);
    if (zr != Z_OK || hlen != (uLongf)(2 * nv)) {
        r = qe_fail(QE_ECORRUPT, "%s: logits of run %s chunk %" PRId64 " position %d: the blob "
                    "(%d bytes) does not inflate to %" PRId64 " halves (zlib %d)", st->path,
                    run_key, chunk, pos, blen, nv, zr);
        goto done;
    }
    for (int64_t v = 0; v < nv; v++)
        f[v] = qe_f16_to_f32((uint16_t)(half[2 * v] | half[2 * v + 1] << 8));
    *out = f;
    *n_vocab = (int)nv;
    f = NULL;
done:
    sqlite3_reset(s);
    free(half);
    free(f);
    return r;
}

/* ---- KLD, timings ---- */

qe_status qe_store_put_kld(qe_store *st, const char *run_key, const char *ref_run_key,
                           const char *session_key, const qe_kld_summary *k)
{
    qe_status r = qe_store__need_key("run key", run_key);
    if (r == QE_OK)
        r = qe_store__need_key("reference run key", ref_run_key);
    if (r == QE_OK)
        r = qe_store__need_key("session key", session_key);
    if (r == QE_OK)
        r = qe_store__begin(st, "storing a KLD summary");
    if (r != QE_OK)
        return r;
    sqlite3_stmt *s = NULL;
    r = qe_store__stmt(st, S_KLD_DEL, &s);
    if (r != QE_OK)
        goto done;
    qe_store__bind_text(s, 1, run_key);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)k->n);
    r = qe_store__step_done(st, s, "storing a KLD summary");
    if (r == QE_OK)
        r = qe_store__stmt(st, S_KLD, &s);
    if (r != QE_OK)
        goto done;
    const double v[] = {
        k->ppl_q, k->ppl_q_err, k->ppl_base, k->ppl_base_err, k->ln_ratio, k->ln_ratio_err,
        k->ppl_ratio, k->ppl_ratio_err, k->ppl_diff, k->ppl_diff_err, k->cor,
        k->kld.mean, k->kld.err, k->kld_max, k->kld_min, k->kld_median,
        k->kld_pct[0], k->kld_pct[1], k->kld_pct[2], k->kld_pct[3],
        k->kld_pct[4], k->kld_pct[5], k->kld_pct[6], k->kld_pct[7],
        k->dp.mean, k->dp.err, k->dp_max, k->dp_min, k->dp_median,
        k->dp_pct[0], k->dp_pct[1], k->dp_pct[2], k->dp_pct[3], k->dp_pct[4],
        k->dp_pct[5], k->dp_pct[6], k->dp_pct[7], k->dp_pct[8], k->dp_pct[9],
        k->dp_rms, k->dp_rms_err, k->same_top, k->same_top_err};
    qe_store__bind_text(s, 1, run_key);
    qe_store__bind_text(s, 2, ref_run_key);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)k->n);
    for (int i = 0; i < (int)(sizeof v / sizeof v[0]); i++)
        if (isfinite(v[i]))
            sqlite3_bind_double(s, 4 + i, v[i]);
    qe_store__bind_text(s, 4 + (int)(sizeof v / sizeof v[0]), session_key);
    QE_ASSERT(4 + sizeof v / sizeof v[0] == 47); /* the session's parameter */
    r = qe_store__step_done(st, s, "storing a KLD summary");
    if (r == QE_OK)
        r = qe_store__commit(st, "storing a KLD summary");
done:
    if (r != QE_OK)
        qe_store__rollback(st);
    return r;
}

qe_status qe_store_add_timing(qe_store *st, const char *run_key, const char *session_key,
                              const char *phase, double seconds, uint64_t n_tokens,
                              uint64_t n_calls)
{
    if (!phase || !*phase || !isfinite(seconds) || seconds < 0)
        return qe_fail(QE_EINVAL, "timing: phase '%s', %g s: expected a name and seconds >= 0",
                       phase ? phase : "(null)", seconds);
    sqlite3_stmt *s = NULL;
    qe_status r = qe_store__stmt(st, S_TIMING, &s);
    if (r != QE_OK)
        return r;
    qe_store__bind_text(s, 1, run_key);
    qe_store__bind_text(s, 2, session_key);
    qe_store__bind_text(s, 3, phase);
    sqlite3_bind_double(s, 4, seconds);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)n_tokens);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)n_calls);
    return qe_store__exec_one(st, s, "storing a timing");
}
