-- 005_generate.sql - text generation runs of a job's [generate] section
-- (lib/generate.h): per model and weight/KV format, every prompt of the
-- prompts dataset is continued, and each generated token is stored with its
-- top-k candidates; per device call, the batch and its time.
--
-- Keys come from content, so shard databases merge with INSERT OR IGNORE:
--   gen_key     SHA-256 of qe_store_gen_config's canonical text (model,
--               prompts dataset, tokenizer, formats, generation options)
--   prompt_key  SHA-256 of "gen_key:prompt_index"
-- A gen_prompts row is written with all its gen_tokens rows in one
-- transaction, so a prompt row means the generation is complete.

CREATE TABLE gen_runs (
    gen_key          TEXT PRIMARY KEY CHECK (length(gen_key) = 64),
    config           TEXT NOT NULL,          -- canonical text; gen_key = SHA-256(config)
    model_sha256     TEXT NOT NULL REFERENCES models(sha256),
    prompts_sha256   TEXT NOT NULL REFERENCES datasets(sha256),
    tokenizer_sha256 TEXT NOT NULL,
    weights          TEXT NOT NULL,          -- weight format ('native', 'f32', 'q4_0', ...)
    kv_k             TEXT NOT NULL,
    kv_v             TEXT NOT NULL,
    max_new          INTEGER NOT NULL CHECK (max_new >= 1),
    sampling         TEXT NOT NULL CHECK (sampling IN ('greedy', 'sample')),
    temperature      REAL NOT NULL,
    top_k            INTEGER NOT NULL,       -- sampling candidates (0 = off)
    top_p            REAL NOT NULL,
    seed             TEXT NOT NULL,          -- run seed, decimal (uint64)
    n_stop           INTEGER NOT NULL,       -- stop strings (their bytes are in config)
    top_logprobs     INTEGER NOT NULL,       -- top-k candidates stored per generated token
    ref_gen_key      TEXT,                   -- the reference format's run; NULL for it
    n_prompts        INTEGER NOT NULL CHECK (n_prompts >= 0),
    job_name         TEXT NOT NULL,
    host             TEXT NOT NULL,
    device           TEXT NOT NULL,
    driver           TEXT NOT NULL,
    build_commit     TEXT NOT NULL,
    session_key      TEXT NOT NULL REFERENCES sessions(session_key),
    started_at       TEXT NOT NULL,
    ended_at         TEXT,
    status           TEXT NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'done', 'partial', 'failed'))
);
CREATE INDEX gen_runs_ref ON gen_runs(ref_gen_key);

-- One generated continuation. ids: the generated token ids as int32
-- little-endian (EOS included when it ended the text).
CREATE TABLE gen_prompts (
    prompt_key    TEXT PRIMARY KEY CHECK (length(prompt_key) = 64),
    gen_key       TEXT NOT NULL REFERENCES gen_runs(gen_key),
    prompt_index  INTEGER NOT NULL CHECK (prompt_index >= 0), -- document index in the dataset
    prompt_sha256 TEXT NOT NULL,             -- of the prompt's bytes
    n_prompt      INTEGER NOT NULL,          -- prompt tokens, BOS included
    n_gen         INTEGER NOT NULL CHECK (n_gen >= 0),
    ids           BLOB NOT NULL,
    text          TEXT NOT NULL,             -- generated text (cut before a stop string)
    finish        TEXT NOT NULL CHECK (finish IN ('eos', 'stop', 'length', 'ctx')),
    stop_index    INTEGER,                   -- the stop string that ended it
    seed          TEXT NOT NULL,             -- this prompt's sampling seed, decimal
    ttft_s        REAL NOT NULL,             -- prefill began -> first token
    prefill_tps   REAL NOT NULL,
    decode_s      REAL NOT NULL,             -- first -> last token
    decode_tps    REAL NOT NULL,             -- (n_gen - 1) / decode_s; 0 when n_gen < 2
    session_key   TEXT NOT NULL,
    written_at    TEXT NOT NULL,
    UNIQUE (gen_key, prompt_index)
);

-- One generated position: its token, log-prob, and top-k candidates (int32
-- ids and float32 log-probs, little-endian, best first).
CREATE TABLE gen_tokens (
    prompt_key TEXT NOT NULL REFERENCES gen_prompts(prompt_key),
    pos        INTEGER NOT NULL CHECK (pos >= 0),   -- 0 = first generated token
    id         INTEGER NOT NULL,
    logp       REAL,                                -- NULL if not finite
    topk_ids   BLOB,                                -- NULL when top_logprobs = 0
    topk_logp  BLOB,
    PRIMARY KEY (prompt_key, pos)
) WITHOUT ROWID;

-- One device call of a session's generation.
CREATE TABLE gen_steps (
    gen_key     TEXT NOT NULL REFERENCES gen_runs(gen_key),
    session_key TEXT NOT NULL,
    step        INTEGER NOT NULL,
    prefill     INTEGER NOT NULL CHECK (prefill IN (0, 1)),
    n_seqs      INTEGER NOT NULL,            -- the batch size
    n_tokens    INTEGER NOT NULL,
    seconds     REAL NOT NULL,
    PRIMARY KEY (gen_key, session_key, step)
) WITHOUT ROWID;

-- Every stored prompt beside the same prompt of its reference format
-- (a reference compares with itself). diverge_pos: the first generated
-- position where the ids differ; when one is a prefix of the other, the
-- shorter length; -1 when identical; NULL when the reference has not
-- stored that prompt.
CREATE VIEW v_gen_divergence AS
SELECT g.gen_key, coalesce(g.ref_gen_key, g.gen_key) AS ref_gen_key, p.prompt_index,
       p.prompt_key, b.prompt_key AS ref_prompt_key, p.n_gen, b.n_gen AS ref_n_gen,
       CASE WHEN b.prompt_key IS NULL THEN NULL
            WHEN p.ids = b.ids THEN -1
            ELSE coalesce((SELECT min(t.pos) FROM gen_tokens t
                           JOIN gen_tokens u ON u.prompt_key = b.prompt_key AND u.pos = t.pos
                           WHERE t.prompt_key = p.prompt_key AND t.id != u.id),
                          min(p.n_gen, b.n_gen)) END AS diverge_pos
FROM gen_runs g
JOIN gen_prompts p ON p.gen_key = g.gen_key
LEFT JOIN gen_prompts b ON b.gen_key = coalesce(g.ref_gen_key, g.gen_key)
                       AND b.prompt_index = p.prompt_index;

-- One row per generation run: prompts stored, exact-match rate against the
-- reference (over prompts both hold), first-divergence position over the
-- prompts that differ, speed.
CREATE VIEW v_gen_summary AS
WITH d AS (
    SELECT gen_key, count(*) AS prompts_done, count(diverge_pos) AS compared,
           sum(diverge_pos = -1) AS exact,
           avg(CASE WHEN diverge_pos >= 0 THEN diverge_pos END) AS mean_diverge,
           min(CASE WHEN diverge_pos >= 0 THEN diverge_pos END) AS min_diverge
    FROM v_gen_divergence GROUP BY gen_key
), s AS (
    SELECT gen_key, avg(n_gen) AS mean_n_gen, sum(n_gen) AS gen_tokens,
           avg(decode_tps) AS mean_decode_tps, avg(ttft_s) AS mean_ttft_s,
           avg(prefill_tps) AS mean_prefill_tps
    FROM gen_prompts GROUP BY gen_key
)
SELECT m.name AS model, ds.path AS prompts, g.weights, g.kv_k, g.kv_v,
       g.ref_gen_key IS NULL AS is_reference, g.n_prompts,
       coalesce(d.prompts_done, 0) AS prompts_done, coalesce(d.compared, 0) AS compared,
       CASE WHEN d.compared > 0 THEN 1.0 * d.exact / d.compared END AS exact_match,
       d.mean_diverge, d.min_diverge, s.mean_n_gen, s.gen_tokens, s.mean_decode_tps,
       s.mean_ttft_s, s.mean_prefill_tps, g.max_new, g.sampling, g.seed,
       CASE WHEN coalesce(d.prompts_done, 0) >= g.n_prompts THEN 'complete'
            ELSE g.status END AS status,
       g.gen_key, coalesce(g.ref_gen_key, g.gen_key) AS ref_gen_key, g.device
FROM gen_runs g
JOIN models m ON m.sha256 = g.model_sha256
JOIN datasets ds ON ds.sha256 = g.prompts_sha256
LEFT JOIN d ON d.gen_key = g.gen_key
LEFT JOIN s ON s.gen_key = g.gen_key
ORDER BY m.name, ds.path, g.ref_gen_key IS NOT NULL, g.weights, g.kv_k, g.kv_v;
