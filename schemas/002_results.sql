-- 002_results.sql - KL-divergence summaries, timings, stored logits.

-- llama-perplexity's KL-divergence summary of a run against its reference
-- (lib/metrics.h qe_kld_summary; percentiles by name: kld_p99_9 is 99.9 %).
CREATE TABLE kld (
    run_key      TEXT PRIMARY KEY REFERENCES runs(run_key),
    ref_run_key  TEXT NOT NULL REFERENCES runs(run_key),
    n            INTEGER NOT NULL,
    ppl_q REAL, ppl_q_err REAL, ppl_base REAL, ppl_base_err REAL,
    ln_ratio REAL, ln_ratio_err REAL, ppl_ratio REAL, ppl_ratio_err REAL,
    ppl_diff REAL, ppl_diff_err REAL, cor REAL,
    kld_mean REAL, kld_err REAL, kld_max REAL, kld_min REAL, kld_median REAL,
    kld_p99_9 REAL, kld_p99 REAL, kld_p95 REAL, kld_p90 REAL,
    kld_p10 REAL, kld_p5 REAL, kld_p1 REAL, kld_p0_1 REAL,
    dp_mean REAL, dp_err REAL, dp_max REAL, dp_min REAL, dp_median REAL,
    dp_p99_9 REAL, dp_p99 REAL, dp_p95 REAL, dp_p90 REAL, dp_p75 REAL,
    dp_p25 REAL, dp_p10 REAL, dp_p5 REAL, dp_p1 REAL, dp_p0_1 REAL,
    dp_rms REAL, dp_rms_err REAL,
    same_top REAL, same_top_err REAL,        -- fractions
    session_key  TEXT NOT NULL,
    written_at   TEXT NOT NULL
);

-- Wall time per run, session and phase ('load', 'tokenize', 'prefill', ...).
CREATE TABLE timings (
    run_key     TEXT NOT NULL REFERENCES runs(run_key),
    session_key TEXT NOT NULL,
    phase       TEXT NOT NULL,
    seconds     REAL NOT NULL,
    n_tokens    INTEGER NOT NULL DEFAULT 0,
    n_calls     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_key, session_key, phase)
) WITHOUT ROWID;

-- Full next-token logits at chosen positions: n_vocab IEEE half floats,
-- little-endian, zlib-compressed (codec 'zlib-f16le').
CREATE TABLE logits (
    run_key TEXT NOT NULL,
    chunk   INTEGER NOT NULL,
    pos     INTEGER NOT NULL,
    n_vocab INTEGER NOT NULL CHECK (n_vocab > 0),
    codec   TEXT NOT NULL CHECK (codec = 'zlib-f16le'),
    data    BLOB NOT NULL,
    PRIMARY KEY (run_key, chunk, pos),
    FOREIGN KEY (run_key, chunk) REFERENCES chunks(run_key, chunk)
) WITHOUT ROWID;
