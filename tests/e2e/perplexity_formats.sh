# e2e: qeval perplexity's weight and KV-cache formats and the paired
# (KL-divergence) evaluation, on PoCL and the C reference.
M=$QEVAL_DATA/models/stories260K.gguf
W=$QEVAL_DATA/text/wiki.test.raw
ppl_of() { printf '%s\n' "$1" | sed -nE 's/^Final estimate.*PPL = ([0-9.]+).*/\1/p'; }
# close A B REL: |A - B| <= REL * B
close() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= r * b) }'; }

# usage errors
expect_exit "--weights q5_1 is a usage error" 2 "$QEVAL" perplexity -m "$M" -f "$W" --weights q5_1
expect_match "the bad weight type is named" "$ERR" "q5_1"
expect_exit "--weights kv=f16 is a usage error" 2 "$QEVAL" perplexity -m "$M" -f "$W" --weights kv=f16
expect_exit "--kv tq5 is a usage error" 2 "$QEVAL" perplexity -m "$M" -f "$W" --kv tq5
expect_match "the bad KV format is named" "$ERR" "tq5"
expect_exit "--kv-v with no value is a usage error" 2 "$QEVAL" perplexity -m "$M" -f "$W" --kv-v
expect_exit "--ref without --variants is a usage error" 2 "$QEVAL" perplexity -m "$M" -f "$W" --ref f32
for bad in "q5_1" "kv=zz" "q8_0+q4_0" "kv=f16+kv=f32" "kv-k=f16+kv=f32" "q8_0," ",q8_0" "q8_0,,q4_0" "q8_0+" "kv" "kx=f16" "kv=" ""; do
    expect_exit "--variants '$bad' is a usage error" 2 "$QEVAL" perplexity -q -m "$M" -f "$W" --variants "$bad"
done
expect_exit "--variants with an unknown weight type" 2 "$QEVAL" perplexity -m "$M" -f "$W" --variants q8_0,q6_k
expect_match "the unknown item is named" "$ERR" "unknown item 'q6_k'"
expect_exit "--ref with bad syntax is a usage error" 2 "$QEVAL" perplexity -q -m "$M" -f "$W" --ref f32+kv=q2 --variants q8_0
expect_exit "--variants on the C reference is a usage error" 2 "$QEVAL" perplexity -q -m "$M" -f "$W" --variants q8_0 --device ref
expect_exit "--variants with --dump is a usage error" 2 "$QEVAL" perplexity -q -m "$M" -f "$W" --variants q8_0 --dump "$E2E_TMP/d.tsv"

# Q8_0 weights with an f32 cache: the device and the C reference (which
# decodes the same blocks in double) agree.
expect_exit "q8_0 weights on PoCL" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 4 --weights q8_0 --kv f32
p_dev=$(ppl_of "$OUT")
expect_match "the weights and cache are reported" "$ERR" "weights: q8_0; KV cache: K f32, V f32"
expect_exit "q8_0 weights on the C reference" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 4 --weights q8_0 --kv f32 --device ref
p_ref=$(ppl_of "$OUT")
if close "$p_dev" "$p_ref" 5e-5; then ok "q8_0 weights: PoCL and reference agree ($p_dev vs $p_ref)"; else not_ok "q8_0 weights: PoCL and reference agree" "$p_dev vs $p_ref"; fi

# A TurboQuant K cache and a Q4_0 V cache: the device encoder and attention
# against the reference's codec round trip (qe_ref_new_kv), token by token.
# Device and reference compute K/V in different float orders (float vs
# double), so a value lying within ~1e-6 of a quantization boundary can round
# the other way; with Q4_0 on this tiny model one such flip moves the rest of
# its chunk visibly. Chunks without a flip agree to ~1e-6 per token: at least
# 3 of 4 chunks must agree to 1e-3 in total.
expect_exit "tq4/q4_0 cache on PoCL" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 4 --kv-k tq4 --kv-v q4_0 --dump "$E2E_TMP/kv_dev.tsv"
expect_exit "tq4/q4_0 cache on the C reference" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 4 --kv-k tq4 --kv-v q4_0 --device ref --dump "$E2E_TMP/kv_ref.tsv"
agree=$(paste "$E2E_TMP/kv_dev.tsv" "$E2E_TMP/kv_ref.tsv" | awk '$1 == $5 && $2 == $6 { d = $4 - $8; s[$1] += d < 0 ? -d : d; n++ }
    END { for (c in s) good += s[c] < 1e-3; print (n == 252 ? good : "rows " n) }')
if [ "$agree" -ge 3 ] 2>/dev/null; then ok "tq4/q4_0 cache: PoCL and reference agree on $agree of 4 chunks"; else not_ok "tq4/q4_0 cache: PoCL and reference agree on >= 3 of 4 chunks" "$agree"; fi

# The default cache is f16; f32 must be asked for.
expect_exit "default run" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 4
expect_match "the default cache is f16" "$ERR" "KV cache: K f16, V f16"
p_f16=$(ppl_of "$OUT")
expect_exit "f32 cache" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 4 --kv f32 --weights f32
p_f32=$(ppl_of "$OUT")
if close "$p_f16" "$p_f32" 1e-2; then ok "an f16 cache moves PPL by < 1 % ($p_f16 vs $p_f32)"; else not_ok "an f16 cache moves PPL by < 1 %" "$p_f16 vs $p_f32"; fi

# Paired evaluation: the reference, a copy of it, and real variants.
expect_exit "paired evaluation" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 4 \
    --ref f32+kv=f32 --variants f32+kv=f32,q8_0,q4_0,kv=tq4
expect_match "the reference's running PPL per chunk" "$OUT" '^\[1\][0-9.]+,\[2\][0-9.]+,\[3\][0-9.]+,\[4\][0-9.]+,'
p_pair=$(ppl_of "$OUT")
if [ "$p_pair" = "$p_f32" ]; then ok "paired reference PPL equals the plain f32 run"; else not_ok "paired reference PPL equals the plain f32 run" "$p_pair vs $p_f32"; fi
n_blocks=$(printf '%s\n' "$OUT" | grep -c '^====== KL divergence statistics ======$')
if [ "$n_blocks" = 4 ]; then ok "one KL-divergence block per variant"; else not_ok "one KL-divergence block per variant" "$n_blocks"; fi
expect_match "each block names its pair" "$OUT" '^#### q4_0 vs f32\+kv=f32 \(252 tokens\) ####$'
self=$(printf '%s\n' "$OUT" | sed -n '/^#### f32+kv=f32 vs/,/^Same top p/p')
expect_match "a copy of the reference: mean KLD 0" "$self" '^Mean    KLD:   0\.000000 ±   0\.000000$'
expect_match "a copy of the reference: maximum KLD 0" "$self" '^Maximum KLD:   0\.000000$'
expect_match "a copy of the reference: same top 100 %" "$self" '^Same top p: 100\.000 ± 0\.000 %$'
expect_match "a copy of the reference: PPL ratio 1" "$self" '^Mean PPL\(Q\)/PPL\(base\)         :   1\.000000 ±   0\.000000$'
expect_match "the table has a header" "$OUT" '^variant +PPL +ΔPPL +mean KLD +99% KLD +same-top +bits/w +weight bytes +tokens/s$'
expect_match "the reference row" "$OUT" '^f32\+kv=f32 \(ref\) +[0-9.]+ ± [0-9.]+ +- +- +- +- +32\.00 '
kld_of() { printf '%s\n' "$OUT" | awk -v n="$1" '$1 == n && $3 == "±" { print $6 }'; }
k8=$(kld_of q8_0); k4=$(kld_of q4_0)
if awk -v a="$k8" -v b="$k4" 'BEGIN { exit !(a != "" && b != "" && a * 10 < b) }'; then
    ok "q8_0 mean KLD is well below q4_0's ($k8 vs $k4)"
else
    not_ok "q8_0 mean KLD is well below q4_0's" "$k8 vs $k4"
fi
# A variant's own PPL equals its plain run.
expect_exit "q4_0 weights, f32 cache, alone" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 4 --weights q4_0 --kv f32
p_q4=$(ppl_of "$OUT")
expect_exit "paired q4_0 again" 0 "$QEVAL" perplexity -q -m "$M" -f "$W" --ctx 128 --chunks 4 --ref f32+kv=f32 --variants q4_0
p_q4_pair=$(printf '%s\n' "$OUT" | awk '$1 == "q4_0" && $3 == "±" { print $2 }')
if close "$p_q4_pair" "$p_q4" 1e-4; then ok "a variant's PPL equals its own run ($p_q4_pair vs $p_q4)"; else not_ok "a variant's PPL equals its own run" "$p_q4_pair vs $p_q4"; fi
