#!/usr/bin/env python3
"""hf_gguf_tokens.py - token ids of a text file from the tokenizer Hugging Face
transformers builds out of a GGUF file, to compare with `qeval tokenize --ids`.

Not part of `make check` (needs transformers, gguf, sentencepiece/tokenizers).

usage: hf_gguf_tokens.py MODEL.gguf TEXT [--out IDS.txt] [--compare QEVAL_IDS.txt]

The whole file, decoded as UTF-8, is ONE string encoded with
add_special_tokens=True (the BOS the GGUF asks for), which is how qeval
tokenizes a dataset. --out writes the ids space-separated; --compare reads
qeval's ids (any whitespace) and reports equality, or the first difference
with the pieces around it, and exits 1 when they differ.
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("text")
    ap.add_argument("--out")
    ap.add_argument("--compare")
    a = ap.parse_args()
    from transformers import AutoTokenizer
    d, f = os.path.split(os.path.abspath(a.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    with open(a.text, encoding="utf-8") as fh:
        text = fh.read()
    ids = tok(text, add_special_tokens=True)["input_ids"]
    print(f"{a.model}: transformers {type(tok).__name__}: {len(text)} characters -> {len(ids)} tokens",
          file=sys.stderr)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(" ".join(map(str, ids)) + "\n")
    if a.compare:
        with open(a.compare) as fh:
            q = [int(t) for t in fh.read().split()]
        if q == ids:
            print(f"identical: {len(ids)} tokens")
            return 0
        n = min(len(q), len(ids))
        i = next((k for k in range(n) if q[k] != ids[k]), n)
        print(f"DIFFERENT: qeval {len(q)} tokens, transformers {len(ids)}; first difference at {i}")
        lo = max(0, i - 3)
        print("  qeval:        ", [(t, tok.convert_ids_to_tokens(t)) for t in q[lo:i + 4]])
        print("  transformers: ", [(t, tok.convert_ids_to_tokens(t)) for t in ids[lo:i + 4]])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
