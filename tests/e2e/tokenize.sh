# tokenize.sh - `qeval tokenize` / `qeval detokenize` (sourced by tests/e2e.sh).
# Expected ids come from MANIFEST.md (stories260K: BOS 1) and llama.cpp's
# Phi-3 vectors (vocab/ggml-vocab-phi-3.gguf.out); the rest are round trips.
S260K="$QEVAL_DATA/models/stories260K.gguf"
PHI3="$QEVAL_DATA/vocab/ggml-vocab-phi-3.gguf"
TS656K="$QEVAL_DATA/models/TinyStories-656K"
WIKI="$QEVAL_DATA/text/wiki.test.raw"

expect_exit "tokenize --help" 0 "$QEVAL" tokenize --help
expect_match "tokenize --help shows --pieces" "$OUT" "--pieces"
expect_exit "detokenize --help" 0 "$QEVAL" detokenize --help
expect_exit "tokenize without --model is a usage error" 2 "$QEVAL" tokenize --text hi
expect_exit "tokenize with an unknown option" 2 "$QEVAL" tokenize --model "$S260K" --frob
expect_exit "tokenize --text and --file together" 2 "$QEVAL" tokenize --model "$S260K" --text a --file "$WIKI"
expect_exit "tokenize a missing model" 1 "$QEVAL" tokenize --model "$E2E_TMP/none.gguf" --text hi
printf 'not a gguf file at all' >"$E2E_TMP/bad.gguf"
expect_exit "tokenize a corrupt model" 3 "$QEVAL" tokenize --model "$E2E_TMP/bad.gguf" --text hi
expect_match "the corrupt model is named" "$ERR" "bad.gguf"

expect_exit "tokenize empty text" 0 "$QEVAL" tokenize --model "$S260K" --text ""
expect_match "empty text is just BOS (1)" "$OUT" "^1$"
expect_exit "tokenize empty text --no-bos" 0 "$QEVAL" tokenize --model "$S260K" --text "" --no-bos
if [ -z "$OUT" ]; then ok "empty text without BOS prints an empty line"; else
    not_ok "empty text without BOS prints an empty line" "got: $OUT"
fi
expect_exit "tokenize Phi-3 'Hello world'" 0 "$QEVAL" tokenize --model "$PHI3" --no-bos --text "Hello world"
expect_match "Phi-3 ids as in llama.cpp's vectors" "$OUT" "^15043 3186$"
expect_exit "tokenize --pieces" 0 "$QEVAL" tokenize --model "$PHI3" --pieces --text "Hello world"
expect_lines "one line per token (BOS + 2)" "$OUT" 3
expect_match "pieces show ids and texts" "$OUT" "^1	<s>"
expect_exit "tokenize --count" 0 "$QEVAL" tokenize --model "$PHI3" --count --text "Hello world"
expect_match "--count prints the count" "$OUT" "^3$"

# Whole file through tokenize and back through detokenize.
"$QEVAL" tokenize --model "$S260K" --file "$WIKI" >"$E2E_TMP/wiki.ids" 2>"$E2E_TMP/err"
expect_exit "detokenize the ids of wiki.test.raw" 0 "$QEVAL" detokenize --model "$S260K" --file "$E2E_TMP/wiki.ids"
"$QEVAL" detokenize --model "$S260K" --file "$E2E_TMP/wiki.ids" >"$E2E_TMP/wiki.back" 2>/dev/null
if cmp -s "$WIKI" "$E2E_TMP/wiki.back"; then ok "wiki.test.raw round trip (stories260K)"; else
    not_ok "wiki.test.raw round trip (stories260K)" "$(cmp "$WIKI" "$E2E_TMP/wiki.back" 2>&1)"
fi
TXT="Once upon a time, there was a little girl named Lily. She loved to play."
printf '%s' "$TXT" | "$QEVAL" tokenize --model "$TS656K" >"$E2E_TMP/ts.ids" 2>"$E2E_TMP/err"
expect_exit "detokenize with a Hugging Face directory" 0 "$QEVAL" detokenize --model "$TS656K" --file "$E2E_TMP/ts.ids"
expect_match "TinyStories-656K round trip from stdin" "$OUT" "^$TXT\$"
expect_exit "detokenize --ids" 0 "$QEVAL" detokenize --model "$PHI3" --ids "1 15043 3186"
expect_match "BOS prints nothing, the dummy prefix is removed" "$OUT" "^Hello world$"
expect_exit "detokenize --special" 0 "$QEVAL" detokenize --model "$PHI3" --special --ids "1,15043,3186"
expect_match "--special shows BOS" "$OUT" "^<s> Hello world$"
expect_exit "detokenize a non-number" 2 "$QEVAL" detokenize --model "$PHI3" --ids "1 x2"
expect_exit "detokenize an id past the vocabulary" 2 "$QEVAL" detokenize --model "$PHI3" --ids "32064"
printf '1 2\n3 oops\n' >"$E2E_TMP/bad.ids"
expect_exit "detokenize a file with garbage" 3 "$QEVAL" detokenize --model "$PHI3" --file "$E2E_TMP/bad.ids"
expect_match "the bad line is named" "$ERR" "bad.ids: line 2"
