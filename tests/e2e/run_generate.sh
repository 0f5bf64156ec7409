# shellcheck shell=bash
# `qeval run` with a [generate] section (jobs/generate.ini's shape, smaller):
# generations for every format land in the database, a second run finds them
# stored, `qeval compare` prints the generation table, `qeval export` writes
# the rows, and a bad prompts file is an exit-3 error naming file and line.
G=$E2E_TMP/rungen
mkdir -p "$G"
gjob() { # gjob PROMPTS DB
cat > "$G/gen.ini" <<EOT
[job]
name = e2e-gen
output = $2
top_k = 3
[model stories260K]
path = \${QEVAL_DATA}/models/stories260K.gguf
[dataset stories]
path = $1
field = prompt
[sweep]
reference = f32
weights = q8_0, q4_0
kv = f32, tq4
[generate]
prompts = stories
max_new_tokens = 12
slots = 16
EOT
}
gjob "$PWD/tests/fixtures/gen_prompts.jsonl" "$G/g.db"
expect_exit "qeval run generates for every format" 0 "$QEVAL" run -q "$G/gen.ini"
expect_match "six generation runs, 96 prompts" "$OUT" "6 generation runs: 6 generated, 0 already complete, 96 prompts written"
n=$("$QEVAL" sql --db "$G/g.db" --csv "SELECT count(*) FROM gen_prompts WHERE length(text) > 0" | tail -1)
if [ "$n" -eq 96 ]; then ok "one non-empty generation per prompt and format"; else not_ok "one generation per prompt and format" "got $n"; fi
expect_exit "a second run finds them stored" 0 "$QEVAL" run -q "$G/gen.ini"
expect_match "nothing generated twice" "$OUT" "6 generation runs: 0 generated, 6 already complete, 0 prompts written"
expect_exit "compare reads the generations" 0 "$QEVAL" compare --db "$G/g.db"
expect_match "compare prints the generation table" "$OUT" "generations \\(exact"
expect_match "the table has the generation columns" "$OUT" "exact +div mean +div min +gen len +decode tok/s +TTFT ms"
expect_match "the reference row" "$OUT" "stories260K +gen_prompts.jsonl +f32 +f32 +16/16 +ref"
expect_match "a variant row with an exact-match rate" "$OUT" "q4_0 +tq4 +16/16 +[0-9.]+%"
expect_exit "export writes the generations" 0 "$QEVAL" export --db "$G/g.db" --what generations
expect_lines "a header and one row per prompt and format" "$OUT" 97
# the reference compared with itself never diverges (diverge_pos -1)
r=$("$QEVAL" sql --db "$G/g.db" --csv "SELECT count(*) FROM v_gen_divergence v JOIN gen_runs g ON g.gen_key = v.gen_key WHERE g.ref_gen_key IS NULL AND v.diverge_pos = -1" | tail -1)
if [ "$r" -eq 16 ]; then ok "the reference matches itself"; else not_ok "the reference matches itself" "got $r"; fi

printf '{"prompt": "Once"}\n{"prompt": ""}\n' > "$G/bad.jsonl"
gjob "$G/bad.jsonl" "$G/bad.db"
expect_exit "an empty prompt is an input error" 3 "$QEVAL" run -q "$G/gen.ini"
expect_match "the message names file and line" "$ERR" "bad.jsonl:2: prompt 1 is empty"
