-- 003_views.sql - the views reports read. Statistics are computed from the
-- chunk rows present, so a partial or merged run always shows what it holds.
-- Needs SQLite's math functions (exp, sqrt: built in since 3.35).

-- One row per run: perplexity ± (llama-perplexity's error formula over all
-- scored tokens), sizes and speed.
CREATE VIEW v_run_summary AS
WITH c AS (
    SELECT run_key, count(*) AS chunks_done, sum(n_scored) AS n, sum(nll_sum) AS s1,
           sum(nll2_sum) AS s2, sum(n_top1) AS n_top1, sum(seconds) AS seconds
    FROM chunks GROUP BY run_key
)
SELECT r.run_key, r.job_name, m.name AS model, r.model_sha256, d.path AS dataset,
       d.kind AS dataset_kind, r.dataset_sha256, r.task, r.n_ctx, r.weights, r.kv_k, r.kv_v,
       r.top_k, r.ref_run_key, r.n_tokens, r.n_chunks,
       coalesce(c.chunks_done, 0) AS chunks_done,
       CASE WHEN r.n_chunks IS NOT NULL AND coalesce(c.chunks_done, 0) >= r.n_chunks
            THEN 'complete' ELSE r.status END AS status,
       coalesce(c.n, 0) AS tokens,
       CASE WHEN c.n > 0 THEN exp(c.s1 / c.n) END AS ppl,
       CASE WHEN c.n > 1 THEN exp(c.s1 / c.n)
            * sqrt(max(c.s2 / c.n - (c.s1 / c.n) * (c.s1 / c.n), 0.0) / (c.n - 1)) END AS ppl_err,
       CASE WHEN c.n > 0 THEN c.s1 / c.n END AS mean_nll,
       CASE WHEN c.n > 0 THEN 100.0 * c.n_top1 / c.n END AS top1_pct,
       m.n_params,
       coalesce(r.weight_bytes, CASE WHEN r.weights = 'native' THEN m.weight_bytes END)
           AS weight_bytes,
       8.0 * coalesce(r.weight_bytes, CASE WHEN r.weights = 'native' THEN m.weight_bytes END)
           / nullif(m.n_params, 0) AS bits_per_weight,
       CASE WHEN c.seconds > 0 THEN 1.0 * c.chunks_done * r.n_ctx / c.seconds END AS tokens_per_s,
       r.device, r.driver, r.build_commit, r.started_at, r.ended_at
FROM runs r
JOIN models m ON m.sha256 = r.model_sha256
JOIN datasets d ON d.sha256 = r.dataset_sha256
LEFT JOIN c ON c.run_key = r.run_key;

-- Top-k entries one per row: rank 1 is the most likely token.
CREATE VIEW v_topk AS
SELECT t.run_key, t.chunk, t.pos, CAST(j.key AS INTEGER) + 1 AS rank,
       json_extract(j.value, '$[0]') AS id, json_extract(j.value, '$[1]') AS logprob
FROM tokens t, json_each(t.topk) j;

-- KL-divergence of each variant against its reference, with both described.
CREATE VIEW v_kld AS
SELECT k.run_key, k.ref_run_key, r.job_name, m.name AS model, d.path AS dataset, r.n_ctx,
       r.weights, r.kv_k, r.kv_v, b.weights AS ref_weights, b.kv_k AS ref_kv_k,
       b.kv_v AS ref_kv_v, k.n, k.ppl_q, k.ppl_q_err, k.ppl_base, k.ppl_base_err,
       k.ppl_ratio, k.ppl_ratio_err, k.ppl_diff, k.ppl_diff_err, k.cor,
       k.kld_mean, k.kld_err, k.kld_max, k.kld_p99_9, k.kld_p99, k.kld_p95, k.kld_p90,
       k.kld_median, k.kld_p10, k.kld_p5, k.kld_p1, k.kld_p0_1, k.kld_min,
       k.dp_mean, k.dp_err, k.dp_rms, k.dp_rms_err,
       100.0 * k.same_top AS same_top_pct, 100.0 * k.same_top_err AS same_top_err_pct
FROM kld k
JOIN runs r ON r.run_key = k.run_key
JOIN runs b ON b.run_key = k.ref_run_key
JOIN models m ON m.sha256 = r.model_sha256
JOIN datasets d ON d.sha256 = r.dataset_sha256;

-- The format comparison: every run beside its reference. delta_ppl_pct is
-- 100 (PPL_run / PPL_ref - 1) over the chunks both runs hold, so partial runs
-- compare like with like; a reference compares with itself (0).
CREATE VIEW v_format_matrix AS
WITH pair AS (
    SELECT r.run_key, sum(c.nll_sum) AS s_q, sum(b.nll_sum) AS s_b, sum(c.n_scored) AS n
    FROM runs r
    JOIN chunks c ON c.run_key = r.run_key
    JOIN chunks b ON b.run_key = coalesce(r.ref_run_key, r.run_key) AND b.chunk = c.chunk
    GROUP BY r.run_key
)
SELECT s.model, s.dataset, s.n_ctx, s.weights, s.kv_k, s.kv_v,
       s.ref_run_key IS NULL AS is_reference,
       s.ppl, s.ppl_err,
       CASE WHEN p.n > 0 THEN 100.0 * (exp((p.s_q - p.s_b) / p.n) - 1.0) END AS delta_ppl_pct,
       k.kld_mean, k.kld_err, k.kld_p99, 100.0 * k.same_top AS same_top_pct,
       s.bits_per_weight, s.weight_bytes, s.tokens_per_s, s.tokens, s.chunks_done,
       s.n_chunks, s.status, s.run_key, coalesce(s.ref_run_key, s.run_key) AS ref_run_key
FROM v_run_summary s
LEFT JOIN pair p ON p.run_key = s.run_key
LEFT JOIN kld k ON k.run_key = s.run_key
ORDER BY s.model, s.dataset, s.n_ctx, s.ref_run_key IS NOT NULL, s.weights, s.kv_k, s.kv_v;
