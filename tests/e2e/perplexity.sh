# e2e: qeval perplexity (llama-perplexity's method) on PoCL and the C reference.
M=$QEVAL_DATA/models/stories260K.gguf
W=$QEVAL_DATA/text/wiki.test.raw
expect_exit "perplexity --help" 0 "$QEVAL" perplexity --help
expect_match "perplexity --help names --batch-seqs" "$OUT" "--batch-seqs"
expect_exit "perplexity without --model is a usage error" 2 "$QEVAL" perplexity --file "$W"
expect_exit "perplexity --ctx abc is a usage error" 2 "$QEVAL" perplexity -m "$M" -f "$W" --ctx abc
expect_exit "perplexity on a missing model fails with 1" 1 "$QEVAL" perplexity -m "$E2E_TMP/nope.gguf" -f "$W"
printf 'GGUF\x01\x00\x00\x00' > "$E2E_TMP/bad.gguf"
expect_exit "perplexity on a corrupt model exits 3" 3 "$QEVAL" perplexity -m "$E2E_TMP/bad.gguf" -f "$W"
head -c 300 "$W" > "$E2E_TMP/short.txt"
expect_exit "text shorter than 2*n_ctx is a clear error" 2 "$QEVAL" perplexity -q -m "$M" -f "$E2E_TMP/short.txt" --ctx 128
expect_match "short text message says how many tokens are needed" "$ERR" "at least 256 tokens"

# An f32 KV cache (the CLI's default is f16): the comparison with the
# reference is exact up to float rounding.
expect_exit "perplexity on PoCL, 6 chunks, 1 per batch" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 6 -b 1 --kv f32
cl1=$(printf '%s\n' "$OUT" | grep '^Final estimate')
expect_match "running PPL printed per chunk" "$OUT" '^\[1\][0-9.]+,\[2\][0-9.]+,'
expect_match "final estimate printed" "$cl1" 'PPL = [0-9.]+ \+/- [0-9.]+'
expect_exit "perplexity on PoCL, 6 chunks, 4 per batch" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 6 -b 4 --kv f32
cl4=$(printf '%s\n' "$OUT" | grep '^Final estimate')
if [ "$cl1" = "$cl4" ]; then ok "batching does not change the result"; else not_ok "batching does not change the result" "$cl1" "$cl4"; fi
expect_exit "perplexity on the C reference" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 6 --device ref --kv f32
ref=$(printf '%s\n' "$OUT" | grep '^Final estimate')
p_cl=$(printf '%s' "$cl1" | sed -E 's/.*PPL = ([0-9.]+).*/\1/')
p_ref=$(printf '%s' "$ref" | sed -E 's/.*PPL = ([0-9.]+).*/\1/')
if awk -v a="$p_cl" -v b="$p_ref" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d / b < 5e-5) }'; then
    ok "OpenCL and reference PPL agree ($p_cl vs $p_ref)"
else
    not_ok "OpenCL and reference PPL agree" "$p_cl vs $p_ref"
fi
expect_match "word and byte perplexity reported" "$OUT" "word PPL [0-9.]+, byte PPL [0-9.]+, bits/byte [0-9.]+"
