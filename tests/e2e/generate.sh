# e2e: qeval generate (continuous batching on PoCL) with stories260K.
M=$QEVAL_DATA/models/stories260K.gguf
expect_exit "generate --help" 0 "$QEVAL" generate --help
expect_match "generate --help names --stop" "$OUT" "--stop"
expect_exit "generate without a model is a usage error" 2 "$QEVAL" generate -p "Hi"
expect_exit "generate without prompts is a usage error" 2 "$QEVAL" generate -m "$M"
expect_exit "generate --temp -1 is a usage error" 2 "$QEVAL" generate -m "$M" -p "Hi" --temp -1
expect_exit "generate --top-p 0 is a usage error" 2 "$QEVAL" generate -m "$M" -p "Hi" --top-p 0
expect_exit "generate --batch 0 is a usage error" 2 "$QEVAL" generate -m "$M" -p "Hi" --batch 0
expect_exit "generate --max-new 1.5 is a usage error" 2 "$QEVAL" generate -m "$M" -p "Hi" --max-new 1.5
expect_exit "generate --stop '' is a usage error" 2 "$QEVAL" generate -m "$M" -p "Hi" --stop ""
expect_exit "a prompt longer than --ctx exits 2" 2 "$QEVAL" generate -q -m "$M" -p "Hi" -p "Once upon a time there was a girl" --ctx 6
expect_match "the long prompt is named" "$ERR" "prompt 1 has [0-9]+ tokens; the context holds 6"
expect_exit "a missing prompts file fails with 1" 1 "$QEVAL" generate -m "$M" -f "$E2E_TMP/none.jsonl"
printf '{"prompt": "Once upon a time"}\n{"prompt": 3}\n' > "$E2E_TMP/bad.jsonl"
expect_exit "a prompts line without a string prompt exits 3" 3 "$QEVAL" generate -q -m "$M" -f "$E2E_TMP/bad.jsonl"
expect_match "the bad line is named" "$ERR" "bad.jsonl:2: expected an object"
printf '{"prompt": "Once upon a time"}\n{"prompt": "Lily\n' > "$E2E_TMP/broken.jsonl"
expect_exit "broken JSON exits 3" 3 "$QEVAL" generate -q -m "$M" -f "$E2E_TMP/broken.jsonl"
expect_match "broken JSON names the line" "$ERR" "broken.jsonl:2:"

# Ten prompts, JSON lines: one per prompt, in prompt order, every field there.
: > "$E2E_TMP/p.jsonl"
for p in "Once upon a time" "The little dog" "Lily and Tom" "Sam had a red" "One day, a big bird" \
         "Mom said" "The cat was sad because" "Tim" "There was a tree" "Ben wanted to play with his"; do
    printf '{"prompt": "%s", "id": "x"}\n' "$p" >> "$E2E_TMP/p.jsonl"
done
expect_exit "generate --json over 10 prompts, 1 slot" 0 "$QEVAL" generate -q -m "$M" -f "$E2E_TMP/p.jsonl" -n 24 -b 1 --json --stop .
j1=$OUT
expect_lines "one JSON line per prompt" "$j1" 10
idx=$(printf '%s\n' "$j1" | jq -r '.index' | tr '\n' ' ')
expect_match "lines come in prompt order" "$idx" "^0 1 2 3 4 5 6 7 8 9 $"
ok_fields=$(printf '%s\n' "$j1" | jq -r 'select((.tokens|length) == .n_gen and (.logprobs|length) == .n_gen and (.top_logprobs[0]|length) == 5 and (.finish == "stop" or .finish == "length" or .finish == "eos")) | .index' | wc -l)
expect_match "tokens, logprobs and 5 top logprobs per token" "$ok_fields" "^10$"
stop_ok=$(printf '%s\n' "$j1" | jq -r 'select(.finish == "stop" and (.text | contains(".") | not)) | .index' | wc -l)
nstop=$(printf '%s\n' "$j1" | jq -r 'select(.finish == "stop") | .index' | wc -l)
if [ "$nstop" -gt 0 ] && [ "$stop_ok" -eq "$nstop" ]; then ok "stop string ends and is cut from the text ($nstop stopped)"; else not_ok "stop string ends and is cut from the text" "$nstop stopped, $stop_ok cut"; fi
expect_exit "the same with 4 slots" 0 "$QEVAL" generate -q -m "$M" -f "$E2E_TMP/p.jsonl" -n 24 -b 4 --json --stop .
strip='[.index, .text, .tokens, .logprobs, .top_logprobs, .finish]'
a=$(printf '%s\n' "$j1" | jq -c "$strip")
b=$(printf '%s\n' "$OUT" | jq -c "$strip")
if [ "$a" = "$b" ]; then ok "greedy output does not depend on the batch"; else not_ok "greedy output does not depend on the batch"; fi

# Seeded sampling: the same for 1 and 3 slots; a text prompts file.
printf 'Once upon a time\n\nThe little dog\nLily and Tom\r\nSam had a red\n' > "$E2E_TMP/p.txt"
expect_exit "sampling, 1 slot" 0 "$QEVAL" generate -q -m "$M" -f "$E2E_TMP/p.txt" -n 16 -b 1 --temp 0.8 --top-k 20 --top-p 0.9 --seed 7 --json
s1=$(printf '%s\n' "$OUT" | jq -c "$strip")
expect_lines "a text file gives one prompt per non-empty line" "$s1" 4
expect_match "CR is not part of a prompt" "$(printf '%s\n' "$OUT" | jq -r '.prompt' | sed -n 3p)" '^Lily and Tom$'
expect_exit "sampling, 3 slots" 0 "$QEVAL" generate -q -m "$M" -f "$E2E_TMP/p.txt" -n 16 -b 3 --temp 0.8 --top-k 20 --top-p 0.9 --seed 7 --json
s3=$(printf '%s\n' "$OUT" | jq -c "$strip")
if [ "$s1" = "$s3" ]; then ok "seeded sampling does not depend on the batch"; else not_ok "seeded sampling does not depend on the batch"; fi
expect_exit "sampling, another seed" 0 "$QEVAL" generate -q -m "$M" -f "$E2E_TMP/p.txt" -n 16 -b 3 --temp 0.8 --top-k 20 --top-p 0.9 --seed 8 --json
s8=$(printf '%s\n' "$OUT" | jq -c "$strip")
if [ "$s1" != "$s8" ]; then ok "another seed samples differently"; else not_ok "another seed samples differently"; fi

# Text output and the summary.
expect_exit "generate, text output" 0 "$QEVAL" generate -m "$M" -p "Once upon a time" -p "Tim" -n 8 -b 2
expect_match "text output has a header per prompt" "$OUT" "^--- prompt 0 \(5 tokens -> 8 generated, length\)"
expect_match "the continuation follows the prompt" "$OUT" "Once upon a time"
expect_match "summary reports decode tokens/s" "$ERR" "decode: [0-9]+ tokens in [0-9.]+ s \([0-9.]+ tokens/s"

# Weight and KV formats: accepted, named in the summary, still batch-independent.
expect_exit "generate --kv q9 is a usage error" 2 "$QEVAL" generate -q -m "$M" -p "Hi" --kv q9
expect_exit "generate --weights q5_k is a usage error" 2 "$QEVAL" generate -q -m "$M" -p "Hi" --weights q5_k
expect_exit "generate --weights q8_0 --kv tq4/q8_0, 1 slot" 0 "$QEVAL" generate -m "$M" -f "$E2E_TMP/p.txt" -n 12 -b 1 --weights q8_0 --kv tq4/q8_0 --json
expect_match "the summary names the formats" "$ERR" "weights q8_0, kv tq4/q8_0"
f1=$(printf '%s\n' "$OUT" | jq -c "$strip")
expect_exit "generate --weights q8_0 --kv tq4/q8_0, 4 slots" 0 "$QEVAL" generate -q -m "$M" -f "$E2E_TMP/p.txt" -n 12 -b 4 --weights q8_0 --kv tq4/q8_0 --json
f4=$(printf '%s\n' "$OUT" | jq -c "$strip")
if [ "$f1" = "$f4" ]; then ok "quantized weights and cache: output does not depend on the batch"; else not_ok "quantized weights and cache: output does not depend on the batch"; fi
