# shellcheck shell=bash
# `qeval run` (--dry-run and errors; real runs are in run.sh), `merge`, `compare`,
# `export`, `sql`: sourced by tests/e2e.sh (helpers expect_exit/expect_match/
# expect_lines). Databases are filled with the sqlite3 shell, and expected
# numbers are computed by Python from the same inserted values.
S=$E2E_TMP/store
mkdir -p "$S"

# ---- qeval run ----
expect_exit "run --help exits 0" 0 "$QEVAL" run --help
expect_match "run --help shows usage" "$OUT" "usage: qeval run JOB.ini"
expect_exit "run without a job is a usage error" 2 "$QEVAL" run
expect_exit "run rejects an unknown option" 2 "$QEVAL" run jobs/demo.ini --frobnicate
expect_exit "run --shard needs I/N" 2 "$QEVAL" run jobs/demo.ini --shard 3/2 --dry-run
expect_match "run --shard is explained" "$ERR" "expected I/N with 0 <= I < N"

expect_exit "run --dry-run of the demo job exits 0" 0 "$QEVAL" run jobs/demo.ini --dry-run --db "$S/dry.db"
dry1=$OUT
expect_lines "the demo job lists 48 runs (+3 lines)" "$OUT" 51
expect_match "dry run lists reference runs" "$OUT" "stories260K +wikitext2 +f32 +f16 +[0-9a-f]{12} - "
expect_match "dry run lists variants with their reference" "$OUT" "tinystories656K +tinyshakespeare +q4_0 +tq3 +[0-9a-f]{12} [0-9a-f]{12}"
if [ -e "$S/dry.db" ]; then not_ok "a dry run writes no database"; else ok "a dry run writes no database"; fi
expect_exit "a second dry run exits 0" 0 "$QEVAL" run jobs/demo.ini --dry-run --db "$S/dry.db"
if [ "$OUT" = "$dry1" ]; then ok "run keys are deterministic"; else not_ok "run keys are deterministic"; fi
expect_exit "a shard of the demo job" 0 "$QEVAL" run jobs/demo.ini --dry-run --shard 1/4 --db "$S/dry.db"
expect_lines "shard 1/4 lists 12 runs (+3 lines)" "$OUT" 15
expect_match "shard 1/4 holds run 1" "$OUT" "^   1  "
expect_match "shard 1/4 holds run 45" "$OUT" "^  45  "

# The key follows the data: one changed byte gives another run key.
cp "$QEVAL_DATA/text/tinyshakespeare_input.txt" "$S/a.txt"
cat > "$S/job.ini" <<EOF
[job]
n_ctx = 128
output = $S/small.db
[model m]
path = \${QEVAL_DATA}/models/stories260K.gguf
[dataset d]
path = $S/a.txt
EOF
expect_exit "dry run of a small job" 0 "$QEVAL" run "$S/job.ini" --dry-run
key_a=$(printf '%s\n' "$OUT" | awk '$1 == "0" {print $6}')
printf 'X' | dd of="$S/a.txt" bs=1 seek=1000 conv=notrunc 2>/dev/null
expect_exit "dry run after changing one byte" 0 "$QEVAL" run "$S/job.ini" --dry-run
key_b=$(printf '%s\n' "$OUT" | awk '$1 == "0" {print $6}')
if [ -n "$key_a" ] && [ "$key_a" != "$key_b" ]; then ok "a changed dataset byte changes the run key"; else
    not_ok "a changed dataset byte changes the run key" "$key_a vs $key_b"; fi

expect_exit "run on a device that does not exist fails at runtime" 1 "$QEVAL" run "$S/job.ini" --db "$S/none.db" --device no-such-device
expect_match "the missing device is named, with the devices that exist" "$ERR" "no-such-device"
if [ -e "$S/none.db" ]; then not_ok "a refused run writes no database"; else ok "a refused run writes no database"; fi

# Job file errors: exit 3, FILE:LINE.
printf '[job]\nn_ctx = 128\nn_seq = many\n' > "$S/bad.ini"
expect_exit "a bad value in a job exits 3" 3 "$QEVAL" run "$S/bad.ini" --dry-run
expect_match "the bad value is named with file:line" "$ERR" "bad.ini:3: n_seq = 'many': expected an integer 1 .. 4096"
printf '[model m]\npath = /nonexistent.gguf\n[dataset d]\npath = %s\n' "$S/a.txt" > "$S/bad2.ini"
expect_exit "a missing model file exits 3" 3 "$QEVAL" run "$S/bad2.ini" --dry-run
expect_match "the missing file is named with file:line" "$ERR" "bad2.ini:2: model /nonexistent.gguf: No such file or directory"
printf '[job]\noutput = %s\n[model m]\npath = ${QEVAL_DATA}/models/stories260K.gguf\n[dataset d]\npath = %s\nkind = jsonl\n' "$S/bad3.db" "$S/a.txt" > "$S/bad3.ini"
expect_exit "a dataset that is not JSONL exits 3" 3 "$QEVAL" run "$S/bad3.ini" --dry-run
expect_match "the bad row is named" "$ERR" "\\[dataset d\\]: .*a.txt:1: invalid JSON"
expect_exit "a missing job file exits 1" 1 "$QEVAL" run "$S/nope.ini" --dry-run

# ---- a database made by qeval, filled by the sqlite3 shell ----
expect_exit "merge --db with no input creates a database" 0 "$QEVAL" merge --db "$S/a.db"
K_M=aa00000000000000000000000000000000000000000000000000000000000001
K_D=bb00000000000000000000000000000000000000000000000000000000000002
K_S=cc00000000000000000000000000000000000000000000000000000000000003
K_R=dd00000000000000000000000000000000000000000000000000000000000004
K_V=ee00000000000000000000000000000000000000000000000000000000000005
fill() { # fill DB SESSION FIRST_CHUNK LAST_CHUNK
    {
        echo "BEGIN;"
        echo "INSERT OR IGNORE INTO models VALUES ('$K_M', 'tiny, \"quoted\"', '/m.gguf', 'gguf', 'llama', 1000, 4000, 4000, '{}', '{}', 't');"
        echo "INSERT OR IGNORE INTO datasets VALUES ('$K_D', 'text', '/data/wiki.txt', NULL, '$K_D', 10, 1, 10, 0, 't');"
        echo "INSERT INTO sessions VALUES ('$2', 'e2e', NULL, 'h', 1, 'dev', 'drv', 'c', 't', NULL, 'f32');"
        while read -r key w ref; do
            echo "INSERT OR IGNORE INTO runs (run_key, config, task, model_sha256, dataset_sha256, tokenizer_sha256, n_ctx, weights, kv_k, kv_v, top_k, chunking, ref_run_key, job_name, host, device, driver, build_commit, session_key, n_tokens, n_chunks, weight_bytes, started_at, status) VALUES ('$key', 'c', 'perplexity', '$K_M', '$K_D', '$K_M', 8, '$w', 'f16', 'f16', 2, 'llama-perplexity', $ref, 'e2e', 'h', 'dev', 'drv', 'c', '$2', 40, 4, 562, 't', 'running');"
        done <<RUNS
$K_R f32 NULL
$K_V q4_0 '$K_R'
RUNS
        for c in $(seq "$3" "$4"); do
            # reference nll = 1.0 + c/10 per token (3 tokens); variant + 0.05
            echo "INSERT INTO chunks VALUES ('$K_R', $c, 4, 3, $(python3 -c "print(3*(1+$c/10))"), $(python3 -c "print(3*(1+$c/10)**2)"), 1, 0.5, '$2', 't');"
            echo "INSERT INTO chunks VALUES ('$K_V', $c, 4, 3, $(python3 -c "print(3*(1.05+$c/10))"), $(python3 -c "print(3*(1.05+$c/10)**2)"), 1, 0.5, '$2', 't');"
            for p in 4 5 6; do
                echo "INSERT INTO tokens VALUES ('$K_R', $c, $p, 7, -(1+$c/10.0), 7, '[[7,-1.5],[9,-2.25]]', NULL);"
            done
        done
        echo "COMMIT;"
    } | sqlite3 "$1"
}
fill "$S/a.db" "$K_S" 0 2
expect_exit "compare exits 0" 0 "$QEVAL" compare --db "$S/a.db"
ppl_ref=$(python3 -c "import math; n=[1+c/10 for c in range(3) for _ in range(3)]; print('%.4f' % math.exp(sum(n)/len(n)))")
d_ppl=$(python3 -c "import math; print('%+.3f%%' % (100*(math.exp(0.05)-1)))")
expect_match "compare shows the reference PPL" "$OUT" "$ppl_ref ± "
expect_match "compare shows the variant's PPL change" "$OUT" "[+]${d_ppl#+}"
expect_match "compare marks the reference" "$OUT" " ref "
expect_match "compare shows bits per weight (562 bytes x 8 / 1000)" "$OUT" " 4\\.50 "
expect_exit "compare --ref by prefix" 0 "$QEVAL" compare --db "$S/a.db" --ref ee00
expect_exit "compare --ref with no match exits 1" 1 "$QEVAL" compare --db "$S/a.db" --ref 0123
expect_exit "compare needs --db" 2 "$QEVAL" compare
expect_exit "compare on a missing database exits 1" 1 "$QEVAL" compare --db "$S/missing.db"
printf 'not a database, only text, long enough to be read as a header.........................\n' > "$S/text.db"
expect_exit "compare on a non-database exits 3" 3 "$QEVAL" compare --db "$S/text.db"

# export: read back with Python's csv module
expect_exit "export runs" 0 "$QEVAL" export --db "$S/a.db" --what runs --csv "$S/runs.csv"
expect_exit "the runs CSV reads back" 0 python3 -c '
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
assert len(rows) == 2, rows
for r in rows:
    assert r["model"] == "tiny, \"quoted\"", r["model"]
    n = [1 + c / 10 for c in range(3) for _ in range(3)]
    if r["weights"] == "f32":
        assert float(r["ppl"]) == math.exp(sum(n) / 9) or abs(float(r["ppl"]) / math.exp(sum(n) / 9) - 1) < 1e-12
        assert r["ref_run_key"] == ""
    assert r["tokens"] == "9" and r["chunks_done"] == "3" and r["n_chunks"] == "4"
' "$S/runs.csv"
expect_exit "export tokens to stdout" 0 "$QEVAL" export --db "$S/a.db" --what tokens
printf '%s\n' "$OUT" > "$S/tokens.csv"
expect_exit "the tokens CSV keeps JSON with commas in one field" 0 python3 -c '
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
assert len(rows) == 9, len(rows)
assert json.loads(rows[0]["topk"]) == [[7, -1.5], [9, -2.25]]
' "$S/tokens.csv"
expect_exit "export rejects an unknown table" 2 "$QEVAL" export --db "$S/a.db" --what logits
expect_exit "export to an unwritable path exits 1" 1 "$QEVAL" export --db "$S/a.db" --what runs --csv /nonexistent/dir/x.csv

# sql
expect_exit "sql prints a table" 0 "$QEVAL" sql --db "$S/a.db" "SELECT weights, count(*) AS n FROM chunks JOIN runs USING (run_key) GROUP BY weights ORDER BY weights"
expect_lines "sql table: header, rule, 2 rows" "$OUT" 4
expect_match "sql table rows" "$OUT" "q4_0 +3"
expect_exit "sql --csv" 0 "$QEVAL" sql --db "$S/a.db" --csv "SELECT name FROM models"
expect_match "sql --csv quotes text" "$OUT" '"tiny, ""quoted"""'
expect_exit "sql refuses writes" 2 "$QEVAL" sql --db "$S/a.db" "DELETE FROM tokens"
expect_exit "sql left the tokens alone" 0 "$QEVAL" sql --db "$S/a.db" --csv "SELECT count(*) AS n FROM tokens"
expect_match "9 tokens still there" "$OUT" "^9$"
expect_exit "sql reports syntax errors as usage errors" 2 "$QEVAL" sql --db "$S/a.db" "SELEKT 1"
expect_match "sql syntax error is explained" "$ERR" "SQL: near \"SELEKT\": syntax error"

# merge: the union, without duplicates, idempotent
expect_exit "second database" 0 "$QEVAL" merge --db "$S/b.db"
fill "$S/b.db" "ff00000000000000000000000000000000000000000000000000000000000006" 1 3
expect_exit "merge two databases" 0 "$QEVAL" merge --db "$S/m.db" "$S/a.db" "$S/b.db"
expect_match "merge reports rows added from the second" "$OUT" "b.db: \\+0 runs, \\+2 chunks, \\+3 tokens"
expect_exit "merged chunk count" 0 "$QEVAL" sql --db "$S/m.db" --csv "SELECT count(*) AS n FROM chunks"
expect_match "4 chunks x 2 runs, no duplicates" "$OUT" "^8$"
expect_exit "merged runs are complete" 0 "$QEVAL" sql --db "$S/m.db" --csv "SELECT count(*) AS n FROM runs WHERE status = 'done'"
expect_match "both runs done" "$OUT" "^2$"
expect_exit "merging again" 0 "$QEVAL" merge --db "$S/m.db" "$S/b.db"
expect_match "merging again adds nothing" "$OUT" "\\+0 runs, \\+0 chunks, \\+0 tokens"
expect_exit "merging a non-database exits 3" 3 "$QEVAL" merge --db "$S/m.db" "$S/text.db"
expect_exit "merging a missing file exits 1" 1 "$QEVAL" merge --db "$S/m.db" "$S/missing.db"
# a copy whose columns were swapped by hand: merge copies SELECT *, so it refuses it whole
cp "$S/b.db" "$S/edited.db"
sqlite3 "$S/edited.db" "ALTER TABLE chunks RENAME COLUMN n_top1 TO x; ALTER TABLE chunks RENAME COLUMN n_scored TO n_top1; ALTER TABLE chunks RENAME COLUMN x TO n_scored"
expect_exit "merging a database edited by hand exits 3" 3 "$QEVAL" merge --db "$S/m.db" "$S/edited.db"
expect_match "the edited table is named" "$ERR" "edited.db: table chunks is not the one schema version [0-9]+ defines"
# --keep-going: the refused inputs are named and skipped, the others merged, exit still 3
rm -f "$S/k.db"
expect_exit "merge -k over refused inputs exits 3" 3 "$QEVAL" merge -k --db "$S/k.db" "$S/text.db" "$S/a.db" "$S/edited.db" "$S/b.db"
expect_match "-k names the first refused input" "$ERR" "text.db"
expect_match "-k names the second refused input" "$ERR" "edited.db: table chunks"
expect_match "-k merged the inputs after the refused ones" "$OUT" "b.db: \+0 runs, \+2 chunks"
expect_exit "without -k the first refusal stops the merge" 3 "$QEVAL" merge --db "$S/k2.db" "$S/text.db" "$S/a.db"
expect_exit "so the second input was not merged" 0 "$QEVAL" sql --db "$S/k2.db" --csv "SELECT count(*) AS n FROM chunks"
expect_match "no chunks in it" "$OUT" "^0$"
if [ "$(sqlite3 "$S/m.db" 'PRAGMA integrity_check')" = ok ]; then ok "the merged database is intact"; else
    not_ok "the merged database is intact"; fi

# an older database is upgraded by a write open, refused by a read-only one
python3 - "$S/old.db" schemas/001_*.sql <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript(open(sys.argv[2]).read())
db.execute("PRAGMA user_version = 1")
db.execute("PRAGMA application_id = 1902474849")
db.commit()
PY
expect_exit "a read-only report on an old schema exits 3" 3 "$QEVAL" compare --db "$S/old.db"
expect_match "the old schema is explained" "$ERR" "schema version 1, this qeval reads version [0-9]+: upgrade it with 'qeval merge --db"
expect_exit "merge --db upgrades it" 0 "$QEVAL" merge --db "$S/old.db"
expect_exit "then it can be read" 0 "$QEVAL" compare --db "$S/old.db"
n_schemas=$(ls schemas/*.sql | wc -l)
if [ "$(sqlite3 "$S/old.db" 'PRAGMA user_version')" = "$n_schemas" ]; then ok "user_version = number of migrations"; else
    not_ok "user_version = number of migrations"; fi
