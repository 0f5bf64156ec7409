-- 004_bench.sql - qeval bench: llama-bench-style speed measurements
-- (lib/bench.h). One row per test (pp<N> or tg<N>) and configuration, with
-- every setting, the environment, the mean and sample standard deviation of
-- tokens/s and each repetition; bench_kernels holds the per-kernel device
-- times of a run with --profile.
--
-- bench_key is the SHA-256 of the row's canonical JSON (settings,
-- environment, samples and creation time), so databases written on several
-- machines merge with INSERT OR IGNORE. Times are UTC ISO-8601 text.

CREATE TABLE bench (
    bench_key     TEXT PRIMARY KEY CHECK (length(bench_key) = 64),
    created_at    TEXT NOT NULL,
    build_commit  TEXT NOT NULL,             -- git commit qeval was built from
    qeval_version TEXT NOT NULL,
    device        TEXT NOT NULL,             -- OpenCL device name
    driver        TEXT NOT NULL,             -- driver version
    platform      TEXT NOT NULL,             -- OpenCL platform name
    model_path    TEXT NOT NULL,
    model_name    TEXT NOT NULL,
    model_sha256  TEXT NOT NULL,             -- hex SHA-256 of the weights file
    synthetic     INTEGER NOT NULL CHECK (synthetic IN (0, 1)), -- GGUF has qeval.synth.arch
    synth_arch    TEXT,                      -- its value; NULL for real models
    n_params      INTEGER NOT NULL,          -- of the model as benchmarked
    weight_bytes  INTEGER NOT NULL,          -- of the model as benchmarked
    weights       TEXT NOT NULL,             -- 'native' or the requantization target
    kv_k          TEXT NOT NULL,             -- K cache format
    kv_v          TEXT NOT NULL,             -- V cache format
    test          TEXT NOT NULL,             -- 'pp512', 'tg128'
    n_prompt      INTEGER NOT NULL,          -- pp tokens per sequence (0 for tg)
    n_gen         INTEGER NOT NULL,          -- tg tokens per sequence (0 for pp)
    n_batch       INTEGER NOT NULL CHECK (n_batch >= 1), -- sequences side by side
    n_ctx         INTEGER NOT NULL,          -- engine positions per sequence
    warmup        INTEGER NOT NULL,          -- untimed repetitions first
    reps          INTEGER NOT NULL CHECK (reps >= 1),
    n_tokens      INTEGER NOT NULL,          -- tokens per repetition
    mean_tps      REAL NOT NULL,             -- mean over repetitions of tokens/s
    stddev_tps    REAL NOT NULL,             -- sample standard deviation of tokens/s
    samples_s     TEXT NOT NULL,             -- JSON array: wall seconds of each repetition
    samples_tps   TEXT NOT NULL,             -- JSON array: tokens/s of each repetition
    profiled      INTEGER NOT NULL CHECK (profiled IN (0, 1))
);
CREATE INDEX bench_by_model ON bench (model_sha256, test, n_batch);

CREATE TABLE bench_kernels (
    bench_key TEXT NOT NULL REFERENCES bench (bench_key),
    kernel    TEXT NOT NULL,                 -- kernel function name
    calls     INTEGER NOT NULL,              -- launches over all repetitions
    total_ns  INTEGER NOT NULL,              -- device time over all repetitions
    PRIMARY KEY (bench_key, kernel)
);
