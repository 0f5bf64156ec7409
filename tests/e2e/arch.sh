# Architectures through the CLI: tiny `qeval synth --family qwen2` and
# `--family gemma3 --window 8` models (7 layers: layer 5 global, the others
# sliding) are described by `qeval perplexity`, and its OpenCL engine and the
# C reference (--device ref) agree on every scored token's log-prob within
# 1e-3 (chunks of 48 > the window). synth's usage errors for families.
# (sourced by tests/e2e.sh: uses $QEVAL, $QEVAL_DATA, $E2E_TMP, expect_*)

ADIR=$E2E_TMP/arch
mkdir -p "$ADIR"
WIKI=$QEVAL_DATA/text/wiki.test.raw

for fam in qwen2 gemma3; do
    extra=()
    [ "$fam" = gemma3 ] && extra=(--window 8)
    expect_exit "synth --family $fam" 0 "$QEVAL" synth --arch stories260k --family "$fam" \
        "${extra[@]}" --layers 7 -o "$ADIR/$fam.gguf"
    expect_exit "$fam: perplexity on the engine" 0 "$QEVAL" perplexity -m "$ADIR/$fam.gguf" \
        -f "$WIKI" --ctx 48 --chunks 3 -q --dump "$ADIR/$fam.cl.tsv"
    expect_match "$fam: the description names the architecture" "$OUT$ERR" "\(gguf, $fam\)"
    expect_exit "$fam: perplexity on the reference" 0 "$QEVAL" perplexity -m "$ADIR/$fam.gguf" \
        -f "$WIKI" --ctx 48 --chunks 3 -q -d ref --dump "$ADIR/$fam.ref.tsv"
    if awk -F'\t' 'NR == FNR { a[$1 " " $2] = $4; next }
                   ($1 " " $2) in a { d = a[$1 " " $2] - $4; if (d < 0) d = -d;
                                      if (d > m) m = d; n++ }
                   END { printf "%d tokens, max |delta| %g\n", n, m; exit !(n == 69 && m < 1e-3) }' \
        "$ADIR/$fam.ref.tsv" "$ADIR/$fam.cl.tsv" >"$ADIR/$fam.cmp"; then
        ok "$fam: engine vs reference: $(cat "$ADIR/$fam.cmp")"
    else
        not_ok "$fam: engine vs reference" "$(cat "$ADIR/$fam.cmp")"
    fi
done
expect_exit "gemma3: short perplexity" 0 "$QEVAL" perplexity -m "$ADIR/gemma3.gguf" -f "$WIKI" \
    --ctx 16 --chunks 1 -q
expect_match "gemma3: sliding window described" "$OUT$ERR" "sliding window 8 on layers l % 6 < 5"

expect_exit "synth: unknown family" 2 "$QEVAL" synth --arch stories260k --family mamba -o "$ADIR/x.gguf"
expect_match "unknown family: the choices are named" "$ERR" "expected llama, qwen2 or gemma3"
expect_exit "synth: --window without gemma3" 2 "$QEVAL" synth --arch stories260k --window 4 -o "$ADIR/x.gguf"
expect_exit "synth: llama3 scaling outside llama" 2 "$QEVAL" synth --arch llama-3.2-1b --family qwen2 --plan
