#!/usr/bin/env python3
"""Reference token ids from Hugging Face `tokenizers`, for tests/check_tokenizer.c.

usage: python3 tests/oracle/hf_tokenize.py [--data DIR] [--models DIR] [--out DIR] [--hf-json-only]
  DIR defaults: $QEVAL_DATA or ../shared/data; models/; tests/fixtures/
needs: pip install tokenizers   (written against tokenizers 0.23)

Tokenizers:
  tinystories656k  DATA/models/TinyStories-656K/tokenizer.json, loaded as is.
  smollm2          rebuilt from MODELS/smollm2-135m-q4_1.gguf (`make models`):
                   vocabulary and merges from its tokenizer.ggml.tokens/.merges,
                   read by the small GGUF parser below (independent of qeval's C),
                   with SmolLM2's Hugging Face configuration: BPE without unknown
                   token or byte fallback, pre-tokenizer Sequence[Digits(individual),
                   ByteLevel(add_prefix_space=False, use_regex=True)], its 17
                   control tokens as special added tokens, no post-processor (the
                   GGUF says add_bos_token = false). Skipped when the model is
                   absent. The rebuilt tokenizer is also saved as
                   MODELS/smollm2-135m-hf/tokenizer.json so qeval's tokenizer.json
                   path can be checked against the same fixture.
Texts: DATA/text/wiki.test.raw and DATA/text/tinyshakespeare_input.txt.

Also tests/fixtures/tok_bpe_cases.json, for the byte-level BPE pre-tokenizers
without any downloaded model: an 800-token byte-level BPE trained here on
tinyshakespeare and wiki.test.raw ("vocab": token texts in id order, id 0 = "<|endoftext|>" a
special token; "merges": "a b" in rank order), "cases": strings, and for each
llama.cpp pre-tokenizer name the Hugging Face pre_tokenizer that has the same
regexes ("pre_tokenizers"; llama-bpe also sets the model's ignore_merges) and
the ids `tokenizers` gives each case ("expected"; encode(case).ids, which
matches added tokens in the text).
And tests/fixtures/tok_metaspace_cases.json: the Metaspace pre-tokenizer (see
metaspace_cases below).

How qeval tokenizes a dataset, and so how this script does: the whole file,
decoded as UTF-8, is ONE string, encoded with add_special_tokens=True (BOS/EOS
as the tokenizer's post-processor says).

Fixture file tests/fixtures/tok_<tokenizer>_<text>.txt (plain text):
  # comment lines
  tokenizer <name>
  text <file name under DATA/text>
  n_tokens <count of the whole-file id sequence>
  sha256 <hex>   SHA-256 of the whole-file ids, each written as a 4-byte
                 little-endian unsigned integer, concatenated in order
  prefix_lines <L>
  prefix <ids...> the leading ids of the whole-file sequence that cover the
                 first L lines: every token whose text ends at or before the
                 end of line L (by the encoding's character offsets; the BOS,
                 which has no text, included)
"""
import argparse
import hashlib
import json
import os
import struct
import sys

PREFIX_LINES = 120
TEXTS = ["wiki.test.raw", "tinyshakespeare_input.txt"]


def read_gguf_kv(path):
    """Metadata of a GGUF v2/v3 file: {key: value}; arrays as lists."""
    with open(path, "rb") as f:
        head = f.read(24)
        if head[:4] != b"GGUF":
            raise SystemExit("%s: not a GGUF file" % path)
        version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
        if version not in (2, 3):
            raise SystemExit("%s: GGUF version %d" % (path, version))
        data = f.read(64 << 20)  # metadata of small models fits well within this
    pos = 0
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)[0]
        pos += struct.calcsize("<" + fmt)
        return v

    def string():
        nonlocal pos
        n = take("Q")
        v = data[pos:pos + n]
        pos += n
        return v

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    kv = {}
    for _ in range(n_kv):
        key = string().decode()
        kv[key] = value(take("I"))
    return kv


def smollm2_from_gguf(path):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kv = read_gguf_kv(path)
    assert kv["tokenizer.ggml.model"] == b"gpt2" and kv["tokenizer.ggml.pre"] == b"smollm"
    tokens = [t.decode("utf-8") for t in kv["tokenizer.ggml.tokens"]]
    types = kv["tokenizer.ggml.token_type"]
    merges = []
    for m in kv["tokenizer.ggml.merges"]:
        a, b = m.decode("utf-8").split(" ", 1)
        merges.append((a, b))
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, byte_fallback=False,
                               fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    assert not kv.get("tokenizer.ggml.add_bos_token", False)
    return tok


def fixture(name, tok, text_name, text):
    enc = tok.encode(text, add_special_tokens=True)
    ids = enc.ids
    blob = b"".join(struct.pack("<I", i) for i in ids)
    # End (in characters) of line PREFIX_LINES.
    end, cut = 0, len(text)
    for _ in range(PREFIX_LINES):
        nl = text.find("\n", end)
        if nl < 0:
            break
        end = nl + 1
        cut = end
    prefix = [i for i, (s, e) in zip(ids, enc.offsets) if e <= cut]
    k = len(prefix)
    assert ids[:k] == prefix, "offsets are not monotonic"
    lines = [
        "# generated by tests/oracle/hf_tokenize.py with tokenizers %s" % tokenizers_version(),
        "# whole file as one string, add_special_tokens=True; sha256 over u32 little-endian ids",
        "tokenizer %s" % name,
        "text %s" % text_name,
        "n_tokens %d" % len(ids),
        "sha256 %s" % hashlib.sha256(blob).hexdigest(),
        "prefix_lines %d" % PREFIX_LINES,
        "prefix " + " ".join(str(i) for i in prefix),
    ]
    return "\n".join(lines) + "\n"


LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")
BPE_CASES = [
    "Hello world! It's 2024, isn't it? I'M FINE, you're ok; we'll see... they'd've",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\n\n\r\n  \n mixed\n",
    "numbers 1 12 123 1234 12345 3.14159 1,000,000 x86_64 v2.0",
    "0000 00000 000000 0000000 2000 1900s 10000th",
    "unicode: caf\u00e9 na\u00efve \u03a9\u03bc\u03ad\u03b3\u03b1 \u041c\u043e\u0441\u043a\u0432\u0430 "
    "\u6771\u4eac \U0001F600\U0001F44D\U0001F3FD \u00bd \u0663\u0664 \u2581x \u00a0y\u3000z",
    "<|endoftext|>special in text<|endoftext|> end",
    "code: def f(x):\n    return x**2  # comment\n\n\n",
    "'s 't 'S 'T 're 'Re 'RE 'll 'd 'm 've 'x",
    "",
    " ",
    "\n",
    "!!!!!! ?????? ------====== \"quoted\" (paren) [brack] {brace}",
]


def bpe_cases(data):
    """The tok_bpe_cases.json fixture (see the module docstring)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    base.train([os.path.join(data, "text/tinyshakespeare_input.txt"), os.path.join(data, "text/wiki.test.raw")],
               trainer)
    j = json.loads(base.to_str())
    vocab = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    merges = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    with open(os.path.join(data, "text/tinyshakespeare_input.txt"), encoding="utf-8") as f:
        cases = BPE_CASES + [f.read(3000)]
    variants = {
        "gpt-2": (pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False),
        "llama-bpe": (pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), True),
        "qwen2": (pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), False),
        "smollm": (pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]), False),
    }
    out = {"vocab": [t for t, _ in vocab], "merges": merges, "cases": cases, "pre_tokenizers": {},
           "expected": {}}
    for name, (pre, ignore_merges) in variants.items():
        jj = json.loads(base.to_str())
        jj["model"]["ignore_merges"] = ignore_merges
        tok = Tokenizer.from_str(json.dumps(jj))
        tok.pre_tokenizer = pre
        out["pre_tokenizers"][name] = json.loads(tok.to_str())["pre_tokenizer"]
        out["expected"][name] = [tok.encode(c).ids for c in cases]
    return out


META_CASES = ["Once upon a time, there was a girl.", "  two  spaces ", "a<|end_story|> b", "\nnew\n line", "x",
              "", " ", "Tom's dog\u2581ran!"]


def metaspace_cases(data):
    """tok_metaspace_cases.json: TinyStories-656K's tokenizer.json with its
    normalizer removed and a Metaspace pre-tokenizer instead, for every
    prepend_scheme and split; ids of each case (encode(case).ids)."""
    from tokenizers import Tokenizer

    with open(os.path.join(data, "models/TinyStories-656K/tokenizer.json")) as f:
        base = json.load(f)
    out = {"cases": META_CASES, "variants": []}
    for scheme in ("always", "first", "never"):
        for split in (False, True):
            j = json.loads(json.dumps(base))
            j["normalizer"] = None
            j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
                                  "split": split}
            tok = Tokenizer.from_str(json.dumps(j))
            out["variants"].append({"pre_tokenizer": j["pre_tokenizer"],
                                    "expected": [tok.encode(c).ids for c in META_CASES]})
    return out


def tokenizers_version():
    import tokenizers
    return tokenizers.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("QEVAL_DATA", "../shared/data"))
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--hf-json-only", action="store_true",
                    help="only rebuild MODELS/smollm2-135m-hf/tokenizer.json (used by `make models`)")
    args = ap.parse_args()
    from tokenizers import Tokenizer

    toks = {"tinystories656k": Tokenizer.from_file(
        os.path.join(args.data, "models/TinyStories-656K/tokenizer.json"))}
    gguf = os.path.join(args.models, "smollm2-135m-q4_1.gguf")
    if os.path.exists(gguf):
        toks["smollm2"] = smollm2_from_gguf(gguf)
        hf_dir = os.path.join(args.models, "smollm2-135m-hf")
        os.makedirs(hf_dir, exist_ok=True)
        toks["smollm2"].save(os.path.join(hf_dir, "tokenizer.json"))
    else:
        print("note: %s absent (run `make models`); smollm2 fixtures not written" % gguf, file=sys.stderr)
    if args.hf_json_only:
        return
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tok_bpe_cases.json"), "w") as f:
        json.dump(bpe_cases(args.data), f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(args.out, "tok_metaspace_cases.json"), "w") as f:
        json.dump(metaspace_cases(args.data), f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    for name, tok in toks.items():
        for text_name in TEXTS:
            with open(os.path.join(args.data, "text", text_name), "rb") as f:
                text = f.read().decode("utf-8")
            out = os.path.join(args.out, "tok_%s_%s.txt" % (name, text_name.split(".")[0].split("_")[0]))
            with open(out, "w") as f:
                f.write(fixture(name, tok, text_name, text))
            print("wrote", out, file=sys.stderr)


if __name__ == "__main__":
    main()
