#!/usr/bin/env bash
# One engine knob's values at decode on the GPU machine (device tool, carry
# .debs): for each value of environment variable VAR (default
# QEVAL_MMA_SKINNY, the mma_skinny shape "MT,NB,U") in VALS, the hash of
# greedy generations with top-5 log-probs (the knobs are meant to keep the
# bits: every value should print the same), tg128 tok/s (-r 3) and the
# profile's matmul and attention lines (launches by global size). With
# PP=1 it measures prefill instead: the hash of a perplexity dump (16
# chunks of 512 tokens of wiki.test.raw, 8 a batch) and pp512 B 8 tok/s.
#   bash bench/gpu_sweep.sh   (knobs VAR, VALS, WT (q8_0), BB (1), KV (f16), PP)
set -u
OUT=${OUT:-/tmp/qeval-gpu}
mkdir -p "$OUT"
source bench/gpu_env.sh
qe_gpu_build "$OUT" || exit 1
Q=build-gpu/bin/qeval
WT=${WT:-q8_0}
VAR=${VAR:-QEVAL_MMA_SKINNY}
M=/tmp/qeval-ab-$WT.gguf
[ -f "$M" ] || $Q synth --arch llama-3.2-1b --weights "$WT" -o "$M" >/dev/null 2>&1 || exit 1
for v in ${VALS:-1,2,4 1,4,4 1,4,2 1,2,8 1,1,8 1,8,2}; do
    export "$VAR=$v"
    if [ -n "${PP:-}" ]; then
        shape="-p 512 -n 0 -b 8"
        h="perplexity dump $(qe_gpu_ppl_hash $Q "$M" file "${KV:-f16}")"
    else
        shape="-p 0 -n 128 -b ${BB:-1}"
        h="generations $($Q generate -q -d nvidia -m "$M" --kv "${KV:-f16}" -b 1 -n 64 --json \
            --logprobs 5 -p "Once upon a time" -p "The" 2>&1 |
            sed -E 's/"(ttft_s|prefill_tps|decode_tps)": *[0-9.e+-]+,?//g' | md5sum | cut -c1-12)"
    fi
    tps=$($Q bench -d nvidia -m "$M" $shape --kv "${KV:-f16}" -r 3 -o csv 2>/dev/null |
          python3 -c 'import csv, sys; print(" ".join("%.1f" % float(r["mean_tps"]) for r in csv.DictReader(sys.stdin)))')
    echo "$VAR=$v: $h, bench $shape: $tps tok/s"
    QEVAL_PROFILE_SHAPES=1 $Q bench -d nvidia -m "$M" $shape --kv "${KV:-f16}" -r 1 --profile \
        2>/dev/null | grep -E '^\| (mma|attn|wt_|total)' | head -10 |
        awk -F'|' '{printf "  %s %s calls %.2f us\n", $2, $3, ($3 > 0 ? 1000 * $4 / $3 : 0)}'
done
