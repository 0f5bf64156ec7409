-- 001_core.sql - models, datasets, sessions, runs, chunks and per-token results.
--
-- Every key is content-derived, so databases written by separate processes
-- (Slurm array tasks) merge with INSERT OR IGNORE:
--   models.sha256    SHA-256 of the weights file (sha256sum of the .gguf or
--                    of model.safetensors)
--   datasets.sha256  SHA-256 of the documents evaluated (lib/dataset.h)
--   runs.run_key     SHA-256 of runs.config, the canonical text of everything
--                    that changes results (lib/store.h qe_store_run_key)
--   chunks           (run_key, chunk index)
--   tokens           (run_key, chunk, scored position)
--   sessions         SHA-256 of host, pid and start time of one qeval process
-- Times are UTC ISO-8601 text.

CREATE TABLE models (
    sha256        TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    name          TEXT NOT NULL,
    path          TEXT NOT NULL,             -- as first seen
    source_format TEXT NOT NULL,             -- 'gguf' or 'hf'
    arch          TEXT NOT NULL,             -- 'llama'
    n_params      INTEGER NOT NULL CHECK (n_params >= 0),
    weight_bytes  INTEGER NOT NULL CHECK (weight_bytes >= 0), -- weights as stored
    file_bytes    INTEGER,
    hparams       TEXT NOT NULL,             -- JSON object of hyper-parameters
    weight_types  TEXT NOT NULL,             -- JSON object {type name: tensor count}
    added_at      TEXT NOT NULL
);

CREATE TABLE datasets (
    sha256      TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    kind        TEXT NOT NULL CHECK (kind IN ('text', 'jsonl', 'csv', 'ids')),
    path        TEXT NOT NULL,               -- as first seen
    field       TEXT,                        -- JSONL field or CSV column
    file_sha256 TEXT NOT NULL,               -- sha256sum of the file
    file_bytes  INTEGER NOT NULL,
    n_docs      INTEGER NOT NULL,
    doc_bytes   INTEGER NOT NULL,            -- text bytes (ids: number of ids)
    n_skipped   INTEGER NOT NULL DEFAULT 0,  -- bad rows left out (skip_bad_rows)
    added_at    TEXT NOT NULL
);

-- Rows a dataset left out under skip_bad_rows, and why.
CREATE TABLE dataset_skipped (
    dataset_sha256 TEXT NOT NULL REFERENCES datasets(sha256),
    row            INTEGER NOT NULL,         -- line (JSONL, ids) or record (CSV) number
    reason         TEXT NOT NULL,
    PRIMARY KEY (dataset_sha256, row)
) WITHOUT ROWID;

-- What a tokenizer made of a dataset.
CREATE TABLE dataset_tokens (
    dataset_sha256   TEXT NOT NULL REFERENCES datasets(sha256),
    tokenizer_sha256 TEXT NOT NULL,
    n_tokens         INTEGER NOT NULL,
    tokens_sha256    TEXT NOT NULL,          -- SHA-256 of the ids as int32 little-endian
    PRIMARY KEY (dataset_sha256, tokenizer_sha256)
) WITHOUT ROWID;

-- One qeval process writing into this database (or into one merged into it).
CREATE TABLE sessions (
    session_key  TEXT PRIMARY KEY CHECK (length(session_key) = 64),
    job_name     TEXT NOT NULL,
    job_sha256   TEXT,                       -- of the job file
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    device       TEXT NOT NULL,
    driver       TEXT NOT NULL,
    build_commit TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT
);

CREATE TABLE runs (
    run_key          TEXT PRIMARY KEY CHECK (length(run_key) = 64),
    config           TEXT NOT NULL,          -- canonical text; run_key = SHA-256(config)
    task             TEXT NOT NULL CHECK (task IN ('perplexity')),
    model_sha256     TEXT NOT NULL REFERENCES models(sha256),
    dataset_sha256   TEXT NOT NULL REFERENCES datasets(sha256),
    tokenizer_sha256 TEXT NOT NULL,
    n_ctx            INTEGER NOT NULL CHECK (n_ctx >= 1),
    weights          TEXT NOT NULL,          -- weight format evaluated ('native', 'f32', 'q4_0', ...)
    kv_k             TEXT NOT NULL,          -- K cache format
    kv_v             TEXT NOT NULL,          -- V cache format
    top_k            INTEGER NOT NULL CHECK (top_k >= 0),
    chunking         TEXT NOT NULL,          -- chunk rules ('llama-perplexity')
    ref_run_key      TEXT,                   -- KLD reference run; NULL for a reference
    job_name         TEXT NOT NULL,          -- these describe the session that created the run
    host             TEXT NOT NULL,
    device           TEXT NOT NULL,
    driver           TEXT NOT NULL,
    build_commit     TEXT NOT NULL,
    session_key      TEXT NOT NULL REFERENCES sessions(session_key),
    n_tokens         INTEGER,                -- dataset tokens, once planned
    n_chunks         INTEGER,                -- chunks in the full plan (a chunk limit does not change it)
    weight_bytes     INTEGER,                -- weight bytes in the evaluated format
    started_at       TEXT NOT NULL,
    ended_at         TEXT,
    status           TEXT NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'done', 'partial', 'failed'))
);
CREATE INDEX runs_ref ON runs(ref_run_key);

-- One evaluated chunk. Written with its tokens in one transaction, so a
-- chunk row means the chunk is complete.
CREATE TABLE chunks (
    run_key     TEXT NOT NULL REFERENCES runs(run_key),
    chunk       INTEGER NOT NULL CHECK (chunk >= 0),
    first_pos   INTEGER NOT NULL,            -- first scored position
    n_scored    INTEGER NOT NULL CHECK (n_scored >= 0),
    nll_sum     REAL NOT NULL,               -- sum of -log p(target), in position order
    nll2_sum    REAL NOT NULL,               -- sum of its squares
    n_top1      INTEGER NOT NULL,            -- positions whose argmax is the target
    seconds     REAL NOT NULL,               -- device time attributed to the chunk
    session_key TEXT NOT NULL REFERENCES sessions(session_key),
    written_at  TEXT NOT NULL,
    PRIMARY KEY (run_key, chunk)
) WITHOUT ROWID;

-- One scored position. topk is a JSON array [[id, logprob], ...] best first
-- (v_topk expands it); log-probs keep float precision (9 significant digits).
CREATE TABLE tokens (
    run_key  TEXT NOT NULL,
    chunk    INTEGER NOT NULL,
    pos      INTEGER NOT NULL,               -- position in the chunk that predicts target
    target   INTEGER NOT NULL,
    logprob  REAL,                           -- log p(target); NULL if not finite
    argmax   INTEGER NOT NULL,
    topk     TEXT,                           -- NULL when top_k = 0
    kld      REAL,                           -- KL(reference || this run) here, when computed
    PRIMARY KEY (run_key, chunk, pos),
    FOREIGN KEY (run_key, chunk) REFERENCES chunks(run_key, chunk)
) WITHOUT ROWID;
