#!/usr/bin/env bash
# Same bits and speed of this tree against a base commit, on the GPU machine
# (device tool, carry .debs and .oracle), in one call:
#   here:   git archive BASE | gzip > bench/base.tgz     (untracked: it travels)
#   device: bash bench/gpu_ab.sh
# Builds both trees, then for each SPEC (model, weights, KV formats) and
# batch 1 and 3 generates three prompts greedily with top-5 log-probs
# (timing fields removed) with each build and prints SAME or DIFF of the
# two outputs' hashes; for each PSPEC the same of a perplexity dump (16
# chunks of 512 tokens of wiki.test.raw, 8 a batch: prefill matmuls of
# 4,096 rows, which the short prompts above never reach); then tg128 tok/s
# of both builds, alternating, ROUNDS rounds of -r 3 on the synthetic
# Llama-3.2-1B in q8_0 and q4_0 (BB: batch sizes, KV: cache formats). Delete bench/base.tgz before committing.
# Knobs: SPECS and PSPECS (MODEL:WEIGHTS:KV entries; MODEL synth-W for the
# synthetic model in format W; KV K/V in SPECS only), N (tokens, 200), BB (1),
# KV (f16), NG (128), ROUNDS (2), DEV (nvidia), WTS (the synthetic model's
# weight formats timed, "q8_0 q4_0"), PP (time pp512 instead of tg128, at
# batch BB: set BB=8), PPL (time perplexity instead: PPL chunks of 512 of
# wiki.test.raw, 16 a batch, WTS as --weights; the prefill seconds
# printed), SKIP_SAME / SKIP_SPEED.
set -u
OUT=${OUT:-/tmp/qeval-gpu}
DEV=${DEV:-nvidia}
mkdir -p "$OUT"
[ -f bench/base.tgz ] || { echo "bench/base.tgz missing: git archive BASE | gzip > bench/base.tgz" >&2; exit 2; }
source bench/gpu_env.sh
qe_gpu_build "$OUT" || exit 1
rm -rf /tmp/qeval-base && mkdir /tmp/qeval-base && tar xzf bench/base.tgz -C /tmp/qeval-base &&
    cp -r .debs /tmp/qeval-base/ || exit 1
(cd /tmp/qeval-base && qe_gpu_build "$OUT") || exit 1
NEW=build-gpu/bin/qeval
OLD=/tmp/qeval-base/build-gpu/bin/qeval
export QEVAL_DATA=$PWD/.oracle/data
D=$QEVAL_DATA/models
# synth-W in a spec: the synthetic Llama-3.2-1B in weight format W, written
# once (prequantized: no host requantization in each run)
ab_model() {
    case "$1" in
    synth-*)
        local f=/tmp/qeval-ab-${1#synth-}.gguf
        [ -f "$f" ] || $NEW synth --arch llama-3.2-1b --weights "${1#synth-}" -o "$f" >/dev/null 2>&1 ||
            return 1
        echo "$f" ;;
    *) echo "$1" ;;
    esac
}
gen() { # BIN MODEL WEIGHTS KV BATCH -> hash of the JSON lines (FAILED: a failed run)
    local o
    o=$($1 generate -q -d "$DEV" -m "$2" --weights "$3" --kv "$4" -b "$5" -n "${N:-200}" --json \
        --logprobs 5 --top-k 20 -p "Once upon a time there was a little girl named Lily who" \
        -p "The big brown dog ran to the park and" -p "Tom" 2>&1) &&
        [ "$(grep -c '"finish"' <<<"$o")" = 3 ] || { echo FAILED; return; }
    sed -E 's/"(ttft_s|prefill_tps|decode_tps)": *[0-9.e+-]+,?//g' <<<"$o" | md5sum | cut -c1-12
}
if [ -z "${SKIP_SAME:-}" ]; then
    SPECS=${SPECS:-"$D/stories260K.gguf:q8_0:f16 $D/stories260K.gguf:f16:f16 \
$D/stories260K.gguf:q4_0:q8_0 $D/TinyStories-656K:q8_0:f16 $D/TinyStories-656K:q4_0:tq4 \
$D/TinyStories-656K:f32:tq2/q4_0 synth-q8_0:file:f16 synth-q4_0:file:f16 synth-q8_0:file:tq3"}
    for spec in $SPECS; do
        IFS=: read -r m w kv <<<"$spec"
        m=$(ab_model "$m") || exit 1
        for b in 1 3; do
            a=$(gen $NEW "$m" "$w" "$kv" $b)
            c=$(gen $OLD "$m" "$w" "$kv" $b)
            v=DIFF
            [ "$a" = "$c" ] && v=SAME
            [ "$a" = FAILED ] || [ "$c" = FAILED ] && v=FAILED
            echo "$(basename "$m") weights $w kv $kv B $b: new $a base $c $v"
        done
    done
fi
if [ -z "${SKIP_SAME:-}" ]; then
    PSPECS=${PSPECS:-"$D/TinyStories-656K:f16:f16 $D/stories260K.gguf:q8_0:q8_0 synth-q8_0:file:f16 \
synth-q4_0:file:tq4 synth-q8_0:f16:f16"}
    for spec in $PSPECS; do
        IFS=: read -r m w kv <<<"$spec"
        m=$(ab_model "$m") || exit 1
        a=$(qe_gpu_ppl_hash $NEW "$m" "$w" "$kv" "$DEV")
        c=$(qe_gpu_ppl_hash $OLD "$m" "$w" "$kv" "$DEV")
        v=DIFF
        [ "$a" = "$c" ] && v=SAME
        [ "$a" = FAILED ] || [ "$c" = FAILED ] && v=FAILED
        echo "perplexity $(basename "$m") weights $w kv $kv: new $a base $c $v"
    done
fi
[ -n "${SKIP_SPEED:-}" ] && exit 0
BB=${BB:-1}
for round in $(seq 1 "${ROUNDS:-2}"); do
    for bin in $OLD $NEW; do
        for w in ${WTS:-q8_0 q4_0}; do
            if [ -n "${PPL:-}" ]; then
                m=$(ab_model synth-f16) || exit 1
                echo "round $round $([ $bin = $NEW ] && echo new || echo base) $w perplexity" \
                    "$PPL chunks: $($bin perplexity -q -d "$DEV" -m "$m" --weights "$w" \
                        -f "$QEVAL_DATA/text/wiki.test.raw" -c 512 -b 16 --chunks "$PPL" 2>&1 |
                        grep -o 'prefill [0-9.]* s')"
                continue
            fi
            m=$(ab_model synth-$w) || exit 1
            shape="-p 0 -n ${NG:-128}"
            [ -n "${PP:-}" ] && shape="-p 512 -n 0"
            echo "round $round $([ $bin = $NEW ] && echo new || echo base) $w:" \
                "$($bin bench -d "$DEV" -m "$m" $shape -b "$BB" --kv "${KV:-f16}" -r 3 -o csv 2>/dev/null |
                   python3 -c 'import csv, sys
print("; ".join("B %s kv %s/%s %.1f" % (r["n_batch"], r["kv_k"], r["kv_v"], float(r["mean_tps"]))
                for r in csv.DictReader(sys.stdin)))')"
        done
    done
done
