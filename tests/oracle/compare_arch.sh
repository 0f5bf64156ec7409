#!/usr/bin/env bash
# compare_arch.sh - qeval against Hugging Face transformers on a GGUF model:
# tokenization of a text, and perplexity over its first chunks (llama-perplexity
# chunking, second half of each chunk scored).
#
# usage: tests/oracle/compare_arch.sh MODEL.gguf [CHUNKS] [N_CTX]
#   env: PY (default python3) with transformers, torch, gguf, accelerate and
#        sentencepiece/tokenizers installed (e.g. a venv outside the repo);
#        QEVAL (default bin/qeval); TEXT (default $QEVAL_DATA/text/wiki.test.raw);
#        DEVICE (qeval --device, default the first OpenCL device; 'ref' for the
#        C reference); KV (qeval --kv, default f32: the exact cache); OUT (default a temp dir; keeps ids, dumps, logs).
# Not part of `make check`: needs the Python stack and minutes of CPU.
#
# Steps: qeval tokenize --ids; hf_gguf_tokens.py --compare (exit 1 on any
# difference); qeval perplexity --dump (f32 engine or reference); hf_logprobs.py
# over qeval's ids (BOS rule from tokenizer.ggml.add_bos_token, as qeval);
# hf_logprobs.py --compare prints max/mean |delta log-prob| and both PPLs.
set -euo pipefail
model=${1:?usage: compare_arch.sh MODEL.gguf [CHUNKS] [N_CTX]}
chunks=${2:-20}
n_ctx=${3:-512}
here=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-python3}
QEVAL=${QEVAL:-bin/qeval}
TEXT=${TEXT:-${QEVAL_DATA:-../shared/data}/text/wiki.test.raw}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
dev=()
[ -n "${DEVICE:-}" ] && dev=(--device "$DEVICE")

"$QEVAL" tokenize --model "$model" --ids --file "$TEXT" > "$OUT/ids.txt"
echo "== tokenization (qeval vs transformers)"
tok_rc=0
"$PY" "$here/hf_gguf_tokens.py" "$model" "$TEXT" --compare "$OUT/ids.txt" 2> "$OUT/hf_tok.log" || tok_rc=$?

echo "== perplexity, $chunks chunks of $n_ctx"
"$QEVAL" perplexity --model "$model" --file "$TEXT" --ctx "$n_ctx" --chunks "$chunks" \
    --kv "${KV:-f32}" "${dev[@]}" --dump "$OUT/qeval.tsv" -q > "$OUT/qeval.log" 2>&1
grep -E "^Final|^device" "$OUT/qeval.log"
bos=$("$QEVAL" inspect --json --no-tensors "$model" | "$PY" -c '
import json, sys
m = json.load(sys.stdin)["metadata"]
add = m.get("tokenizer.ggml.add_bos_token", {}).get("value", True)
bos = m.get("tokenizer.ggml.bos_token_id", {}).get("value")
print(bos if add and bos is not None else "")')
bos_arg=()
[ -n "$bos" ] && bos_arg=(--bos "$bos")
"$PY" "$here/hf_logprobs.py" --model "$model" --ids "$OUT/ids.txt" --n-ctx "$n_ctx" \
    --chunks "$chunks" "${bos_arg[@]}" --first half --out "$OUT/hf.tsv" 2> "$OUT/hf.log"
tr '\r' '\n' < "$OUT/hf.log" | grep -E "tokens, mean NLL" || true
"$PY" "$here/hf_logprobs.py" --compare "$OUT/qeval.tsv" "$OUT/hf.tsv"
echo "outputs in $OUT"
exit $tok_rc
