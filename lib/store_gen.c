/* store_gen.c - generation runs in the results store: keys, run rows,
 * idempotent prompt writes (a prompt and its tokens in one transaction),
 * device-call steps, resume (see store.h "generation runs" and
 * schemas/005_generate.sql).
 *
 * Threading: as store.c (one thread per handle). Workload: tens of prompts
 * per run, hundreds of tokens per prompt; statements are prepared per call,
 * which costs little beside the transaction's fsync.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "store.h"
#include "store_internal.h"

#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ','now')"
#define MAX_LOGPROBS 64

qe_status qe_store_gen_config_text(const qe_store_gen_config *c, char **text)
{
    *text = NULL;
    const struct {
        const char *name, *v;
    } keys[] = {{"model", c->model_sha256}, {"prompts", c->prompts_sha256},
                {"tokenizer", c->tokenizer_sha256}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!qe_store__is_key(keys[i].v))
            return qe_fail(QE_EINVAL, "generation config: %s '%s': expected 64 lower-case hex "
                           "digits", keys[i].name, keys[i].v ? keys[i].v : "(null)");
    const struct {
        const char *name, *v;
    } names[] = {{"weights", c->weights}, {"kv_k", c->kv_k}, {"kv_v", c->kv_v}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!qe_store__name_ok(names[i].v))
            return qe_fail(QE_EINVAL, "generation config: %s '%s': expected 1 to 64 characters "
                           "from [A-Za-z0-9_./:+-]", names[i].name, names[i].v ? names[i].v : "(null)");
    if (c->max_new < 1)
        return qe_fail(QE_EINVAL, "generation config: max_new %d: expected at least 1", c->max_new);
    if (c->top_logprobs < 0 || c->top_logprobs > MAX_LOGPROBS)
        return qe_fail(QE_EINVAL, "generation config: top_logprobs %d: expected 0 .. %d",
                       c->top_logprobs, MAX_LOGPROBS);
    if (!isfinite(c->temperature) || !isfinite(c->top_p) || c->top_k < 0)
        return qe_fail(QE_EINVAL, "generation config: bad sampling options");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return qe_fail(QE_ENOMEM, "generation config: out of memory");
    /* %.17g: a double prints so that it reads back exactly */
    fprintf(f,
            "qeval-gen 1\nmodel=%s\nprompts=%s\ntokenizer=%s\nweights=%s\nkv_k=%s\nkv_v=%s\n"
            "max_new=%d\nsampling=%s\ntemperature=%.17g\ntop_k=%d\ntop_p=%.17g\nseed=%" PRIu64
            "\ntop_logprobs=%d\nstops=%zu\n",
            c->model_sha256, c->prompts_sha256, c->tokenizer_sha256, c->weights, c->kv_k, c->kv_v,
            c->max_new, c->sample ? "sample" : "greedy", c->temperature, c->top_k, c->top_p,
            c->seed, c->top_logprobs, c->n_stop);
    for (size_t i = 0; i < c->n_stop; i++) {
        fputs("stop=", f);
        for (size_t k = 0; k < c->stop_len[i]; k++)
            fprintf(f, "%02x", (unsigned char)c->stop[i][k]);
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
        free(buf);
        return qe_fail(QE_ENOMEM, "generation config: out of memory");
    }
    *text = buf;
    return QE_OK;
}

qe_status qe_store_gen_key(const qe_store_gen_config *c, char key[QE_STORE_KEY_HEX])
{
    char *text;
    qe_status r = qe_store_gen_config_text(c, &text);
    if (r != QE_OK)
        return r;
    uint8_t d[32];
    qe_hash_sha256_buf(text, strlen(text), d);
    qe_hash_hex(d, 32, key);
    free(text);
    return QE_OK;
}

void qe_store_gen_prompt_key(const char *gen_key, int64_t index, char key[QE_STORE_KEY_HEX])
{
    char buf[96];
    int n = snprintf(buf, sizeof buf, "%.64s:%" PRId64, gen_key, index);
    uint8_t d[32];
    qe_hash_sha256_buf(buf, (size_t)n, d);
    qe_hash_hex(d, 32, key);
}

/* Prepare sql on st; failures name `what`. */
static qe_status prep(qe_store *st, const char *sql, sqlite3_stmt **s, const char *what)
{
    int rc = sqlite3_prepare_v2(st->db, sql, -1, s, NULL);
    return rc == SQLITE_OK ? QE_OK : qe_store_fail(st, rc, what);
}

qe_status qe_store_gen_stored(qe_store *st, const char *gen_key, size_t n_prompts, uint8_t **done,
                              size_t *n_done)
{
    *done = NULL;
    *n_done = 0;
    qe_status r = qe_store__need_key("generation key", gen_key);
    if (r != QE_OK)
        return r;
    uint8_t *d = calloc(n_prompts ? n_prompts : 1, 1);
    if (!d)
        return qe_fail(QE_ENOMEM, "%s: out of memory", st->path);
    sqlite3_stmt *s = NULL;
    r = prep(st, "SELECT prompt_index FROM gen_prompts WHERE gen_key = ?1", &s,
             "reading stored prompts");
    int rc = SQLITE_DONE;
    if (r == QE_OK) {
        sqlite3_bind_text(s, 1, gen_key, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t i = sqlite3_column_int64(s, 0);
            if (i < 0 || (uint64_t)i >= n_prompts) {
                r = qe_fail(QE_ECORRUPT, "%s: generation %.12s stores prompt %" PRId64
                            ", the prompts dataset has %zu", st->path, gen_key, i, n_prompts);
                break;
            }
            if (!d[i])
                (*n_done)++;
            d[i] = 1;
        }
        if (r == QE_OK && rc != SQLITE_DONE)
            r = qe_store_fail(st, rc, "reading stored prompts");
    }
    sqlite3_finalize(s);
    if (r != QE_OK) {
        free(d);
        *n_done = 0;
        return r;
    }
    *done = d;
    return QE_OK;
}

qe_status qe_store_gen_begin(qe_store *st, const qe_store_gen_config *cfg, const char *ref_gen_key,
                             const char *session_key, size_t n_prompts, uint8_t **done,
                             size_t *n_done)
{
    *done = NULL;
    *n_done = 0;
    char key[QE_STORE_KEY_HEX], *text = NULL;
    qe_status r = qe_store_gen_config_text(cfg, &text);
    if (r == QE_OK)
        r = qe_store_gen_key(cfg, key);
    if (r == QE_OK && ref_gen_key)
        r = qe_store__need_key("reference generation key", ref_gen_key);
    if (r == QE_OK)
        r = qe_store__need_key("session key", session_key);
    if (r != QE_OK) {
        free(text);
        return r;
    }
    sqlite3_stmt *s = NULL;
    int in_tx = 0;
    r = qe_store__begin(st, "starting a generation run");
    if (r != QE_OK)
        goto done;
    in_tx = 1;
    r = prep(st,
             "INSERT INTO gen_runs (gen_key, config, model_sha256, prompts_sha256, "
             "tokenizer_sha256, weights, kv_k, kv_v, max_new, sampling, temperature, top_k, top_p, "
             "seed, n_stop, top_logprobs, ref_gen_key, n_prompts, job_name, host, device, driver, "
             "build_commit, session_key, started_at, status) "
             "SELECT ?1, ?2, m.sha256, d.sha256, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
             "?16, ?17, ?18, s.job_name, s.host, s.device, s.driver, s.build_commit, "
             "s.session_key, " NOW ", 'running' FROM sessions s, models m, datasets d "
             "WHERE s.session_key = ?19 AND m.sha256 = ?3 AND d.sha256 = ?4 "
             "ON CONFLICT (gen_key) DO NOTHING",
             &s, "starting a generation run");
    if (r != QE_OK)
        goto done;
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, cfg->seed);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, cfg->model_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, cfg->prompts_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, cfg->tokenizer_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, cfg->weights, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, cfg->kv_k, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, cfg->kv_v, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 9, cfg->max_new);
    sqlite3_bind_text(s, 10, cfg->sample ? "sample" : "greedy", -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 11, cfg->temperature);
    sqlite3_bind_int(s, 12, cfg->top_k);
    sqlite3_bind_double(s, 13, cfg->top_p);
    sqlite3_bind_text(s, 14, seed, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 15, (int64_t)cfg->n_stop);
    sqlite3_bind_int(s, 16, cfg->top_logprobs);
    if (ref_gen_key)
        sqlite3_bind_text(s, 17, ref_gen_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 18, (int64_t)n_prompts);
    sqlite3_bind_text(s, 19, session_key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    s = NULL;
    if (rc != SQLITE_DONE) {
        r = qe_store_fail(st, rc, "starting a generation run");
        goto done;
    }
    if (sqlite3_changes(st->db) == 0) {
        /* present already, or the model, dataset or session is missing */
        r = prep(st, "UPDATE gen_runs SET status = 'running', ended_at = NULL, "
                     "ref_gen_key = coalesce(?2, ref_gen_key) WHERE gen_key = ?1",
                 &s, "reopening a generation run");
        if (r != QE_OK)
            goto done;
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
        if (ref_gen_key)
            sqlite3_bind_text(s, 2, ref_gen_key, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        sqlite3_finalize(s);
        s = NULL;
        if (rc != SQLITE_DONE) {
            r = qe_store_fail(st, rc, "reopening a generation run");
            goto done;
        }
        if (sqlite3_changes(st->db) == 0) {
            r = qe_fail(QE_ENOTFOUND, "%s: generation run %.12s: model %.12s, prompts dataset "
                        "%.12s or session %.12s is not in the database", st->path, key,
                        cfg->model_sha256, cfg->prompts_sha256, session_key);
            goto done;
        }
    }
    r = qe_store__commit(st, "starting a generation run");
    if (r == QE_OK)
        in_tx = 0;
done:
    sqlite3_finalize(s);
    if (in_tx)
        qe_store__rollback(st);
    free(text);
    if (r != QE_OK)
        return r;
    return qe_store_gen_stored(st, key, n_prompts, done, n_done);
}

/* n values as a little-endian blob (malloc'ed; NULL when out of memory). */
static uint8_t *le32_blob(const void *v, size_t n)
{
    uint8_t *b = malloc(n ? n * 4 : 1);
    if (!b)
        return NULL;
    const uint8_t *src = v;
    for (size_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, src + 4 * i, 4);
        b[4 * i] = (uint8_t)x;
        b[4 * i + 1] = (uint8_t)(x >> 8);
        b[4 * i + 2] = (uint8_t)(x >> 16);
        b[4 * i + 3] = (uint8_t)(x >> 24);
    }
    return b;
}

qe_status qe_store_gen_put_prompt(qe_store *st, const char *gen_key, const char *session_key,
                                  const qe_store_gen_prompt *p, int *written)
{
    int w = 0;
    if (written)
        *written = 0;
    qe_status r = qe_store__need_key("generation key", gen_key);
    if (r == QE_OK)
        r = qe_store__need_key("session key", session_key);
    if (r != QE_OK)
        return r;
    if (p->index < 0 || p->n_gen < 0 || p->top_k < 0 || p->top_k > MAX_LOGPROBS ||
        (p->n_gen && (!p->ids || !p->logp)) || (p->n_gen && p->top_k && (!p->topk_id || !p->topk_logp)) ||
        !p->prompt_sha256 || !p->finish || (p->text_len && !p->text))
        return qe_fail(QE_EINVAL, "generation %.12s: prompt %" PRId64 ": inconsistent arrays",
                       gen_key, p->index);
    char pkey[QE_STORE_KEY_HEX], phash[QE_STORE_KEY_HEX], seed[24];
    qe_store_gen_prompt_key(gen_key, p->index, pkey);
    qe_hash_hex(p->prompt_sha256, 32, phash);
    snprintf(seed, sizeof seed, "%" PRIu64, p->seed);
    const size_t ng = (size_t)p->n_gen, k = (size_t)p->top_k;
    uint8_t *ids = le32_blob(p->ids, ng);
    uint8_t *tki = k ? le32_blob(p->topk_id, ng * k) : NULL;
    uint8_t *tkp = k ? le32_blob(p->topk_logp, ng * k) : NULL;
    sqlite3_stmt *s = NULL, *t = NULL;
    int in_tx = 0;
    if (!ids || (k && (!tki || !tkp))) {
        r = qe_fail(QE_ENOMEM, "%s: out of memory", st->path);
        goto done;
    }
    r = qe_store__begin(st, "writing a generation");
    if (r != QE_OK)
        goto done;
    in_tx = 1;
    r = prep(st,
             "INSERT INTO gen_prompts (prompt_key, gen_key, prompt_index, prompt_sha256, n_prompt, "
             "n_gen, ids, text, finish, stop_index, seed, ttft_s, prefill_tps, decode_s, "
             "decode_tps, session_key, written_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
             "?10, ?11, ?12, ?13, ?14, ?15, ?16, " NOW ") ON CONFLICT DO NOTHING",
             &s, "writing a generation");
    if (r != QE_OK)
        goto done;
    sqlite3_bind_text(s, 1, pkey, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, gen_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, p->index);
    sqlite3_bind_text(s, 4, phash, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 5, p->n_prompt);
    sqlite3_bind_int(s, 6, p->n_gen);
    sqlite3_bind_blob(s, 7, ids, (int)(ng * 4), SQLITE_STATIC);
    sqlite3_bind_text(s, 8, p->text_len ? p->text : "", (int)p->text_len, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, p->finish, -1, SQLITE_STATIC);
    if (p->stop_index >= 0)
        sqlite3_bind_int(s, 10, p->stop_index);
    sqlite3_bind_text(s, 11, seed, -1, SQLITE_STATIC);
    const double nums[] = {p->ttft_s, p->prefill_tps, p->decode_s, p->decode_tps};
    for (int i = 0; i < 4; i++)
        sqlite3_bind_double(s, 12 + i, isfinite(nums[i]) ? nums[i] : 0.0);
    sqlite3_bind_text(s, 16, session_key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        r = (rc & 0xff) == SQLITE_CONSTRAINT
                ? qe_fail(QE_ENOTFOUND, "%s: writing a generation: no generation run %.12s "
                          "(or a bad value: %s)", st->path, gen_key, sqlite3_errmsg(st->db))
                : qe_store_fail(st, rc, "writing a generation");
        goto done;
    }
    w = sqlite3_changes(st->db) > 0;
    if (w) {
        r = prep(st, "INSERT INTO gen_tokens (prompt_key, pos, id, logp, topk_ids, topk_logp) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &t, "writing generated tokens");
        for (size_t i = 0; r == QE_OK && i < ng; i++) {
            sqlite3_reset(t);
            sqlite3_bind_text(t, 1, pkey, -1, SQLITE_STATIC);
            sqlite3_bind_int64(t, 2, (int64_t)i);
            sqlite3_bind_int(t, 3, p->ids[i]);
            if (isfinite(p->logp[i]))
                sqlite3_bind_double(t, 4, (double)p->logp[i]);
            else
                sqlite3_bind_null(t, 4);
            if (k) {
                sqlite3_bind_blob(t, 5, tki + i * k * 4, (int)(k * 4), SQLITE_STATIC);
                sqlite3_bind_blob(t, 6, tkp + i * k * 4, (int)(k * 4), SQLITE_STATIC);
            } else {
                sqlite3_bind_null(t, 5);
                sqlite3_bind_null(t, 6);
            }
            rc = sqlite3_step(t);
            if (rc != SQLITE_DONE)
                r = qe_store_fail(st, rc, "writing generated tokens");
        }
        if (r != QE_OK)
            goto done;
    }
    r = qe_store__commit(st, "writing a generation");
    if (r == QE_OK)
        in_tx = 0;
done:
    sqlite3_finalize(s);
    sqlite3_finalize(t);
    if (in_tx)
        qe_store__rollback(st);
    free(ids);
    free(tki);
    free(tkp);
    if (r == QE_OK && written)
        *written = w;
    return r;
}

qe_status qe_store_gen_put_steps(qe_store *st, const char *gen_key, const char *session_key,
                                 const qe_store_gen_step *steps, size_t n)
{
    qe_status r = qe_store__need_key("generation key", gen_key);
    if (r == QE_OK)
        r = qe_store__need_key("session key", session_key);
    if (r != QE_OK || n == 0)
        return r;
    sqlite3_stmt *s = NULL;
    int in_tx = 0;
    r = qe_store__begin(st, "writing generation steps");
    if (r != QE_OK)
        goto done;
    in_tx = 1;
    r = prep(st, "INSERT OR IGNORE INTO gen_steps (gen_key, session_key, step, prefill, n_seqs, "
                 "n_tokens, seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
             &s, "writing generation steps");
    for (size_t i = 0; r == QE_OK && i < n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, gen_key, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, session_key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, steps[i].index);
        sqlite3_bind_int(s, 4, steps[i].prefill ? 1 : 0);
        sqlite3_bind_int(s, 5, steps[i].n_seqs);
        sqlite3_bind_int(s, 6, steps[i].n_tokens);
        sqlite3_bind_double(s, 7, isfinite(steps[i].seconds) ? steps[i].seconds : 0.0);
        int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
            r = qe_store_fail(st, rc, "writing generation steps");
    }
    if (r == QE_OK)
        r = qe_store__commit(st, "writing generation steps");
    if (r == QE_OK)
        in_tx = 0;
done:
    sqlite3_finalize(s);
    if (in_tx)
        qe_store__rollback(st);
    return r;
}

qe_status qe_store_gen_end(qe_store *st, const char *gen_key, const char *status)
{
    qe_status r = qe_store__need_key("generation key", gen_key);
    if (r != QE_OK)
        return r;
    sqlite3_stmt *s = NULL;
    r = prep(st, "UPDATE gen_runs SET status = ?2, ended_at = " NOW " WHERE gen_key = ?1", &s,
             "closing a generation run");
    if (r != QE_OK)
        return r;
    sqlite3_bind_text(s, 1, gen_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, status, -1, SQLITE_STATIC);
    r = qe_store__exec_one(st, s, "closing a generation run");
    sqlite3_finalize(s);
    return r;
}
