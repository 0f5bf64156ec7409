#!/usr/bin/env bash
# Correctness on the GPU machine, in one call of the device tool:
#   build, list devices, run the OpenCL suites on NVIDIA, perplexity of
#   stories260K over all of wiki.test.raw (n_ctx 128), and the Hugging Face
#   transformers oracle (tests/oracle/hf_logprobs.py) on the first chunks.
# Needs (carried, git-ignored): .debs/ (see bench/gpu_env.sh) and .oracle/ with
#   data/models/{stories260K.gguf,TinyStories-656K}, data/text/wiki.test.raw,
#   data/SHA256SUMS (check_bench's published-hash test reads it), and, for the
#   oracle part, ids-<model>.txt (from `qeval tokenize --ids`) and the gguf
#   wheel: mkdir -p .oracle/data && cp -r ../shared/data/{models,text,SHA256SUMS}
#   .oracle/data/ (NO_ORACLE=1 runs without the last two).
# usage (device tool): bash bench/gpu_check.sh   (writes logs to $OUT: the
#   suites' whole output in suites-f32.log / suites-mma.log)
set -u
OUT=${OUT:-/tmp/qeval-gpu}
T=/tmp/qeval-oracle  # per-token files stay here (too many to bring back)
mkdir -p "$OUT" "$T"
source bench/gpu_env.sh
qe_gpu_build "$OUT" build-gpu/bin/qeval build-gpu/run_tests || exit 1
Q=build-gpu/bin/qeval
export QEVAL_DATA=$PWD/.oracle/data
if [ -z "${ORACLE_ONLY:-}" ]; then
$Q devices
echo "== OpenCL suites on NVIDIA, f32 kernels (their tolerances are f32's)"
SUITES=$(sed -n 's/^CL_SUITES := //p' Makefile)  # every suite that runs OpenCL
QEVAL_GEMM=f32 QEVAL_DEVICE=nvidia build-gpu/run_tests $SUITES 2>&1 | tee "$OUT/suites-f32.log" | grep -v '^ok'
echo "== the tensor-core kernels (check_mma.c) on NVIDIA"
QEVAL_DEVICE=nvidia build-gpu/run_tests mma 2>&1 | tee "$OUT/suites-mma.log" | grep -v '^ok'
echo "== perplexity, stories260K, all of wiki.test.raw, n_ctx 128, NVIDIA"
$Q perplexity -q -d nvidia -m "$QEVAL_DATA/models/stories260K.gguf" -f "$QEVAL_DATA/text/wiki.test.raw" --ctx 128 -b 64 --kv f32 | tail -3
echo "== paired formats, TinyStories-656K, all of wiki.test.raw, n_ctx 512, NVIDIA"
$Q perplexity -q -d nvidia -m "$QEVAL_DATA/models/TinyStories-656K" -f "$QEVAL_DATA/text/wiki.test.raw" --ctx 512 -b 16 \
    --ref f32+kv=f32 --variants f16,q8_0,q4_0,kv=f16,kv=q8_0,kv=q4_0,kv=tq4,kv=tq3 2>/dev/null | tail -14
fi
# the suites' verdicts again, last: the device tool returns only the tail of the output
grep -H "unit tests" "$OUT"/suites-*.log 2>/dev/null
[ -n "${NO_ORACLE:-}" ] && exit 0
echo "== transformers oracle (first chunks, per-token log-probs)"
python3 -m pip install -q --no-deps --no-index --target /tmp/site .oracle/gguf-*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site
for m in stories260K.gguf TinyStories-656K; do
    for ctx in 128 512; do
        n=$([ $ctx = 128 ] && echo 8 || echo 20)
        python3 tests/oracle/hf_logprobs.py --model "$QEVAL_DATA/models/$m" --ids ".oracle/ids-$m.txt" \
            --n-ctx $ctx --chunks $n --bos 1 --first half --out "$T/hf-$m-$ctx.tsv" 2>"$T/hf-$m-$ctx.err"
        tail -1 "$T/hf-$m-$ctx.err"
        $Q perplexity -q -d nvidia -m "$QEVAL_DATA/models/$m" -f "$QEVAL_DATA/text/wiki.test.raw" \
            --ctx $ctx --chunks $n --kv f32 --dump "$T/qe-$m-$ctx.tsv" 2>/dev/null | grep Final
        echo "$m n_ctx $ctx: $(python3 tests/oracle/hf_logprobs.py --compare "$T/hf-$m-$ctx.tsv" "$T/qe-$m-$ctx.tsv" 2>&1 | tail -2 | tr "\n" " ")"
    done
done
