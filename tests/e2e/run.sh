# shellcheck shell=bash
# `qeval run` end to end on PoCL: a small job evaluated into SQLite, resumed
# after SIGKILL at random points, and run with 1 and 8 workers; the per-token
# rows must be identical in every case.
R=$E2E_TMP/run
mkdir -p "$R"
job() { # job WORKERS DB
cat > "$R/job-$1.ini" <<EOT
[job]
name = e2e
output = $2
n_ctx = 64
n_seq = 3
top_k = 4
chunks = 12
workers = $1
[model stories260K]
path = \${QEVAL_DATA}/models/stories260K.gguf
[dataset wiki]
path = \${QEVAL_DATA}/text/wiki.test.raw
[sweep]
reference = f32
weights = f16
kv = f32
EOT
}
# Every stored per-token value, in key order, as text (the run keys are
# content hashes, so two databases of the same job compare directly).
dump() {
    "$QEVAL" sql --db "$1" --csv "SELECT run_key, chunk, pos, target, logprob, argmax, topk, kld
        FROM tokens ORDER BY 1, 2, 3" 2>&1
    "$QEVAL" sql --db "$1" --csv "SELECT run_key, chunk, n_scored, nll_sum FROM chunks ORDER BY 1, 2" 2>&1
    "$QEVAL" sql --db "$1" --csv "SELECT run_key, ref_run_key, n, ppl_q, ppl_base, cor, kld_mean,
        kld_err, kld_max, kld_p99, kld_median, kld_min, dp_mean, dp_rms, same_top FROM kld ORDER BY 1" 2>&1
}
job 2 "$R/full.db"
expect_exit "qeval run evaluates a small job" 0 "$QEVAL" run -q "$R/job-2.ini"
expect_match "both runs evaluated" "$OUT" "2 runs: 2 evaluated"
dump "$R/full.db" > "$R/full.csv"
n=$("$QEVAL" sql --db "$R/full.db" --csv "SELECT count(*) FROM tokens" | tail -1)
# 2 runs x 12 chunks x 31 scored tokens
if [ "$n" -eq $((2 * 12 * 31)) ]; then ok "one row per scored token ($n rows)"; else not_ok "one row per scored token" "got $n rows"; fi
nk=$("$QEVAL" sql --db "$R/full.db" --csv "SELECT count(*) FROM tokens WHERE kld IS NOT NULL" | tail -1)
if [ "$nk" -eq $((12 * 31)) ]; then ok "the variant stores per-token KLD ($nk rows)"; else not_ok "the variant stores per-token KLD" "got $nk rows"; fi
expect_exit "read the KLD summary" 0 "$QEVAL" sql --db "$R/full.db" --csv "SELECT n FROM kld"
expect_match "one KLD summary over every scored token of the variant" "$OUT" "^372$"
expect_exit "a second run finds everything stored" 0 "$QEVAL" run -q "$R/job-2.ini"
expect_match "nothing evaluated twice" "$OUT" "2 runs: 0 evaluated, 2 already complete, 0 chunks written"
expect_exit "compare reads the database" 0 "$QEVAL" compare --db "$R/full.db"
g=$("$QEVAL" sql --db "$R/full.db" --csv "SELECT DISTINCT gemm FROM sessions" | tail -n +2 | tr '\n' ' ')
if "$QEVAL" devices 2>/dev/null | grep -q NVIDIA; then :; else
    expect_match "sessions record the f32 matmul kernels on PoCL" "$g" '^"?f32"? $'
fi
expect_match "compare shows both weight formats" "$OUT" "f16"

# --profile: device time per kernel into the timings table. stories260K has 5
# layers, 12 chunks go in 4 batches of 3: the reference run launches
# `attention` 4 x 5 = 20 times, the variant, run beside its reference, 40.
job 2 "$R/prof.db"
expect_exit "qeval run --profile" 0 "$QEVAL" run -q --profile "$R/job-2.ini"
p=$("$QEVAL" sql --db "$R/prof.db" --csv "SELECT r.weights, t.n_calls FROM timings t JOIN runs r
    USING (run_key) WHERE t.phase = 'kernel:attention' ORDER BY 1" | tail -n +2 | tr '\n' ' ')
expect_match "attention launches per run (reference 20, paired variant 40)" "$p" '^"?f16"?,40 "?f32"?,20 $'
p=$("$QEVAL" sql --db "$R/prof.db" --csv "SELECT count(DISTINCT run_key), min(seconds > 0), min(n_calls > 0)
    FROM timings WHERE phase LIKE 'kernel:%'" | tail -1)
expect_match "both runs have kernel rows with device time" "$p" '^2,1,1$'
p=$("$QEVAL" sql --db "$R/full.db" --csv "SELECT count(*) FROM timings WHERE phase LIKE 'kernel:%'" | tail -1)
expect_match "no kernel rows without --profile" "$p" '^0$'

# SIGKILL at random points, then resume until done. A run that ends before
# its kill leaves the job complete, with nothing left to interrupt: then the
# database starts over, with shorter delays, until two kills land on one
# (a fixed number of tries had failed where a run beat its delay).
job 2 "$R/killed.db"
kills=0 span=40 tries=0
while [ "$kills" -lt 2 ] && [ "$tries" -lt 16 ]; do
    tries=$((tries + 1))
    delay=$(printf '0.%02d' $((5 + RANDOM % span)))
    "$QEVAL" run -q "$R/job-2.ini" >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    if kill -9 "$pid" 2>/dev/null; then
        kills=$((kills + 1))
    else
        rm -f "$R/killed.db" "$R/killed.db-wal" "$R/killed.db-shm"
        kills=0 span=$((span > 8 ? span / 2 : span))
    fi
    wait "$pid" 2>/dev/null
done
if [ "$kills" -ge 2 ]; then ok "qeval run was killed mid-job $kills times"; else
    not_ok "qeval run was killed mid-job at least twice" "$tries runs, the last $kills killed before the job ended"; fi
expect_exit "resume after $kills kills" 0 "$QEVAL" run -q "$R/job-2.ini"
dump "$R/killed.db" > "$R/killed.csv"
if cmp -s "$R/full.csv" "$R/killed.csv"; then ok "killed and resumed equals uninterrupted (no duplicates, no gaps)"; else
    not_ok "killed and resumed equals uninterrupted" "$(diff "$R/full.csv" "$R/killed.csv" | head -5)"; fi
expect_exit "the killed database passes integrity_check" 0 "$QEVAL" sql --db "$R/killed.db" "PRAGMA integrity_check"
expect_match "integrity ok" "$OUT" "ok"

# Workers only tokenize and prepare: rows are identical for 1 and 8.
for w in 1 8; do
    job $w "$R/w$w.db"
    expect_exit "run with $w workers" 0 "$QEVAL" run -q "$R/job-$w.ini"
    dump "$R/w$w.db" > "$R/w$w.csv"
done
if cmp -s "$R/w1.csv" "$R/w8.csv" && cmp -s "$R/w1.csv" "$R/full.csv"; then ok "1, 2 and 8 workers give identical rows"; else
    not_ok "1, 2 and 8 workers give identical rows" "$(diff "$R/w1.csv" "$R/w8.csv" | head -5)"; fi

# store_logits = 16: full logits of every 16th scored position, as f16 BLOBs.
job 2 "$R/logits.db"
sed -i 's/^top_k = 4$/top_k = 4\nstore_logits = 16/' "$R/job-2.ini"
expect_exit "a job storing full logits" 0 "$QEVAL" run -q "$R/job-2.ini"
expect_exit "count stored logit rows" 0 "$QEVAL" sql --db "$R/logits.db" --csv "SELECT count(*) FROM logits"
# 2 runs x 12 chunks x positions 0, 16 of 31 scored
expect_match "two logit rows per chunk and run" "$OUT" "^48$"
