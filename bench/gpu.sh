#!/usr/bin/env bash
# Speed on the GPU machine, qeval and PyTorch side by side in one run:
#   bash bench/gpu.sh [ARCH]     (default llama-3.2-1b; device tool, carry .debs)
# Builds qeval there (bench/gpu_env.sh), writes a synthetic model of ARCH's
# exact shapes (qeval synth), runs qeval bench (pp512, ppl512 at B 1,8; tg128 at B 1,64;
# f16/q8_0/q4_0 weights; f16 and tq4 KV, both for prefill and decode) and
# bench/torch_peer.py (fp16, sdpa) on the same shapes, then prints
# bench/gpu_table.py's table. Raw results go to $OUT (qeval-pp.json,
# qeval-tg.json, torch.jsonl).
set -u
ARCH=${1:-llama-3.2-1b}
OUT=${OUT:-/tmp/qeval-gpu}
REPS=${REPS:-3}
mkdir -p "$OUT"
source bench/gpu_env.sh
qe_gpu_build "$OUT" || exit 1
Q=build-gpu/bin/qeval
M=$(qe_gpu_synth "$ARCH") || exit 1
export PYTHONUNBUFFERED=1
timeout 300 python3 bench/torch_peer.py --arch "$ARCH" --measure copy,prefill,prefill-last,decode \
    --prefill-batches 1,8 --decode-batches 1,64 --reps "$REPS" --out "$OUT/torch.jsonl" >/dev/null
# ppl512 is the prefill that does PyTorch's work (LM head, log-softmax and
# NLL on the scored half); pp512 (head on the last position) is llama-bench's
timeout 400 $Q bench -d nvidia -m "$M" -p 512 --ppl 512 -n 0 -b 1,8 --weights file,q8_0,q4_0 \
    --kv f16,tq4 -r "$REPS" -o json > "$OUT/qeval-pp.json"
timeout 400 $Q bench -d nvidia -m "$M" -p 0 -n 128 -b 1,64 --weights file,q8_0,q4_0 --kv f16,tq4 \
    -r "$REPS" -o json > "$OUT/qeval-tg.json"
python3 - "$OUT" <<'PY'
import json, sys
d = sys.argv[1]
rows = []
for f in ("qeval-pp.json", "qeval-tg.json"):
    try:
        rows += json.load(open(f"{d}/{f}"))
    except Exception as e:
        print("# %s: %s" % (f, e))
json.dump(rows, open(f"{d}/qeval.json", "w"))
PY
python3 bench/gpu_table.py "$OUT/qeval.json" "$OUT/torch.jsonl"
# Perplexity-style prefill end to end (LM head and log-softmax on the scored
# half of every chunk, as llama-perplexity): about 300K tokens of
# wiki.test.raw through the synthetic model's vocabulary, n_ctx 512.
W=${QEVAL_DATA:-.oracle/data}/text/wiki.test.raw
if [ -f "$W" ]; then
    echo
    for wt in file q8_0 q4_0; do
        echo "perplexity, $ARCH, weights $wt, 586 chunks of 512 (300,032 tokens), 16 per batch:"
        $Q perplexity -q -d nvidia -m "$M" -f "$W" --ctx 512 -b 16 --chunks 586 --weights $wt | tail -1
    done
    echo "perplexity, $ARCH, weights q8_0, cache tq4, the same tokens:"
    $Q perplexity -q -d nvidia -m "$M" -f "$W" --ctx 512 -b 16 --chunks 586 --weights q8_0 --kv tq4 | tail -1
fi
# The ceilings behind the figures (bench/limits_probe.c): the floor of one
# launch (host and device), and mma.sync's issue rate with operands in
# registers
echo
cc -O2 -o /tmp/limits_probe bench/limits_probe.c -lOpenCL &&
    /tmp/limits_probe kernels/ptx.cl bench/limits_probe.cl | grep -v '^extensions'
