#!/usr/bin/env python3
"""hf_logprobs.py - per-token log-probabilities from an independent implementation,
to diff against qeval's (the reference forward or the OpenCL engine).

Not part of `make check`: it needs Python packages the build machine lacks.

Input: a text file of token ids (integers separated by any whitespace).
The ids are cut into chunks of --n-ctx tokens exactly like llama.cpp's
perplexity (the remainder is dropped); with --bos ID the first token of every
chunk is replaced by ID. Each chunk is evaluated from an empty cache, and for
every position i in [--first, n_ctx-2] the script writes the log-probability
of the chunk's token i+1 under the softmax of the logits at position i.

Output (--out, default stdout), one line per scored token, tab-separated:
    chunk  pos  target  logprob      (logprob printed with %.9g)
and a summary (token count, mean NLL, PPL) on stderr.

Backends:
  --backend torch  (default) Hugging Face transformers, float32, eager
                   attention, TF32 disabled. A directory is loaded with
                   AutoModelForCausalLM.from_pretrained(dir) (native
                   safetensors); a .gguf file with
                   from_pretrained(dirname, gguf_file=basename), which needs
                   the `gguf` package (pip install gguf-*.whl) and dequantizes
                   to float32. Runs on CUDA when available.
  --backend numpy  a self-contained Llama forward in numpy float64 (about 150
                   lines below), for machines without torch and as a second
                   opinion. Reads HF directories (F32/F16/BF16 safetensors) and
                   GGUF files with F32/F16 tensors; GGUF Q/K rows are un-permuted
                   the way transformers does, then rotated in "halves" layout.

Examples:
  hf_logprobs.py --model ../shared/data/models/TinyStories-656K \\
      --ids ids.txt --n-ctx 128 --chunks 4 --out hf.tsv
  hf_logprobs.py --model ../shared/data/models/stories260K.gguf \\
      --ids ids.txt --n-ctx 256 --bos 1 --first half --out hf.tsv

Without the gguf package (torch images usually lack it): carry its wheel and
  python3 -m pip install -q --no-deps --target /tmp/site gguf-*.whl
  export PYTHONPATH=/tmp/site
(gguf needs numpy, pyyaml, requests and tqdm, which such images have).

Compare two outputs with --compare A B (prints max/mean |diff| of logprobs
over the lines both files have, keyed by chunk and pos).
"""
import argparse
import json
import math
import os
import struct
import sys


def read_ids(path):
    with open(path) as f:
        return [int(t) for t in f.read().split()]


def chunks_of(ids, n_ctx, n_chunks, bos):
    n = len(ids) // n_ctx
    if n_chunks is not None:
        n = min(n, n_chunks)
    for c in range(n):
        chunk = list(ids[c * n_ctx:(c + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos
        yield c, chunk


# ---------------------------------------------------------------- torch

class TorchBackend:
    def __init__(self, path):
        import torch
        from transformers import AutoModelForCausalLM
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.torch = torch
        self.dev = "cuda" if torch.cuda.is_available() else "cpu"
        kw = dict(torch_dtype=torch.float32, attn_implementation="eager")
        if os.path.isdir(path):
            m = AutoModelForCausalLM.from_pretrained(path, **kw)
        else:
            from transformers import AutoConfig
            d, f = os.path.split(os.path.abspath(path))
            # transformers copies the GGUF's padding token id into the config;
            # stories260K's (-1 / out of range) makes nn.Embedding refuse it,
            # and padding plays no part in scoring, so drop a bad one.
            cfg = AutoConfig.from_pretrained(d, gguf_file=f)
            if cfg.pad_token_id is not None and not (0 <= cfg.pad_token_id < cfg.vocab_size):
                cfg.pad_token_id = None
            # A Gemma 3 GGUF has no key for query_pre_attn_scalar, and
            # transformers leaves its default (256, right for every released
            # size but 27B). llama.cpp derives it: n_embd / n_head for the
            # 62-layer (27B) model, head_dim otherwise. Do the same, so a
            # synthetic gemma3 model with another head_dim compares too.
            if getattr(cfg, "model_type", "") in ("gemma3", "gemma3_text"):
                if cfg.num_hidden_layers == 62:
                    cfg.query_pre_attn_scalar = cfg.hidden_size // cfg.num_attention_heads
                else:
                    cfg.query_pre_attn_scalar = cfg.head_dim
            m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, config=cfg, **kw)
        # float32 whatever the checkpoint's default dtype ("auto" in newer
        # transformers) would have picked.
        # (A GGUF-loaded model counts as "quantized" and refuses .float(),
        # but it is already dequantized to the torch_dtype asked for.)
        if next(m.parameters()).dtype != torch.float32:
            m = m.float()
        self.m = m.to(self.dev).eval()
        self.n_vocab = self.m.config.vocab_size

    def logprobs(self, chunk):
        """log_softmax of the logits of every position, float64, [n, vocab]."""
        torch = self.torch
        with torch.no_grad():
            x = torch.tensor([chunk], device=self.dev)
            logits = self.m(input_ids=x, use_cache=False).logits[0]
            return torch.log_softmax(logits.double(), dim=-1).cpu().numpy()


# ---------------------------------------------------------------- numpy

def _np():
    import numpy
    return numpy


def load_safetensors(path):
    np = _np()
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = buf[base + b:base + e]
        dt = info["dtype"]
        if dt == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            a = np.frombuffer(raw, dtype="<f2")
        elif dt == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name}: dtype {dt} not supported by the numpy backend")
        out[name] = a.astype(np.float64).reshape(info["shape"])
    return out


def load_gguf(path):
    """Minimal GGUF v2/v3 reader: metadata scalars/strings and F32/F16 tensors."""
    np = _np()
    with open(path, "rb") as f:
        buf = f.read()
    off = 0

    def rd(fmt):
        nonlocal off
        v = struct.unpack_from(fmt, buf, off)
        off += struct.calcsize(fmt)
        return v[0]

    def rstr():
        nonlocal off
        n = rd("<Q")
        s = buf[off:off + n].decode("utf-8", "replace")
        off += n
        return s

    scal = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = rd("<I"), rd("<Q")
            return [rval(et) for _ in range(n)]
        return rd(scal[t])

    if rd("<I") != 0x46554747:
        raise SystemExit(f"{path}: not a GGUF file")
    rd("<I")
    n_t, n_kv = rd("<Q"), rd("<Q")
    kv = {}
    for _ in range(n_kv):
        k = rstr()
        kv[k] = rval(rd("<I"))
    infos = []
    for _ in range(n_t):
        name = rstr()
        nd = rd("<I")
        ne = [rd("<q") for _ in range(nd)]
        infos.append((name, ne, rd("<I"), rd("<Q")))
    align = kv.get("general.alignment", 32)
    data = (off + align - 1) // align * align
    tensors = {}
    for name, ne, ty, o in infos:
        n = 1
        for e in ne:
            n *= e
        if ty == 0:
            a = np.frombuffer(buf, dtype="<f4", count=n, offset=data + o)
        elif ty == 1:
            a = np.frombuffer(buf, dtype="<f2", count=n, offset=data + o)
        else:
            raise SystemExit(f"{path}: tensor {name}: GGML type {ty} not supported by the numpy backend")
        tensors[name] = a.astype(np.float64).reshape(list(reversed(ne)))
    return kv, tensors


class NumpyBackend:
    """Llama forward in float64, whole chunk at once, halves RoPE layout."""

    def __init__(self, path):
        np = _np()
        self.np = np
        if os.path.isdir(path):
            cfg = json.load(open(os.path.join(path, "config.json")))
            t = load_safetensors(os.path.join(path, "model.safetensors"))
            self.dim, self.L = cfg["hidden_size"], cfg["num_hidden_layers"]
            self.nh = cfg["num_attention_heads"]
            self.nkv = cfg.get("num_key_value_heads") or self.nh
            self.hd = cfg.get("head_dim") or self.dim // self.nh
            self.eps, self.base = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 10000.0)
            rs = cfg.get("rope_scaling") or {}
            kind = rs.get("rope_type", rs.get("type", "default"))
            if kind not in ("default", "linear"):
                raise SystemExit(f"rope_scaling {kind} not supported by the numpy backend")
            self.pos_scale = 1.0 / rs["factor"] if kind == "linear" else 1.0
            emb = t.get("model.embed_tokens.weight", t.get("lm_head.weight"))
            self.emb, self.out = emb, t.get("lm_head.weight", emb)
            if cfg.get("tie_word_embeddings"):
                self.out = emb
            self.norm = t["model.norm.weight"]
            self.layers = []
            for i in range(self.L):
                p = f"model.layers.{i}."
                self.layers.append(dict(
                    an=t[p + "input_layernorm.weight"], q=t[p + "self_attn.q_proj.weight"],
                    k=t[p + "self_attn.k_proj.weight"], v=t[p + "self_attn.v_proj.weight"],
                    o=t[p + "self_attn.o_proj.weight"], fn=t[p + "post_attention_layernorm.weight"],
                    g=t[p + "mlp.gate_proj.weight"], u=t[p + "mlp.up_proj.weight"],
                    d=t[p + "mlp.down_proj.weight"]))
        else:
            kv, t = load_gguf(path)
            if kv.get("general.architecture") != "llama":
                raise SystemExit(f"{path}: architecture {kv.get('general.architecture')}")
            a = "llama."
            self.dim, self.L = kv[a + "embedding_length"], kv[a + "block_count"]
            self.nh = kv[a + "attention.head_count"]
            self.nkv = kv.get(a + "attention.head_count_kv", self.nh)
            self.hd = kv.get(a + "attention.key_length", self.dim // self.nh)
            self.eps = kv[a + "attention.layer_norm_rms_epsilon"]
            self.base = kv.get(a + "rope.freq_base", 10000.0)
            f = kv.get(a + "rope.scaling.factor", kv.get(a + "rope.scale_linear", 0.0))
            self.pos_scale = 1.0 / f if f not in (0.0, 1.0) else 1.0
            self.emb = t["token_embd.weight"]
            self.out = t.get("output.weight", self.emb)
            self.norm = t["output_norm.weight"]

            def unpermute(w, n_head):
                # transformers' reverse_permute: undo llama.cpp's converter.
                s = w.shape
                return w.reshape(n_head, s[0] // n_head // 2, 2, *s[1:]).swapaxes(2, 1).reshape(s)

            self.layers = []
            for i in range(self.L):
                p = f"blk.{i}."
                self.layers.append(dict(
                    an=t[p + "attn_norm.weight"], q=unpermute(t[p + "attn_q.weight"], self.nh),
                    k=unpermute(t[p + "attn_k.weight"], self.nkv), v=t[p + "attn_v.weight"],
                    o=t[p + "attn_output.weight"], fn=t[p + "ffn_norm.weight"],
                    g=t[p + "ffn_gate.weight"], u=t[p + "ffn_up.weight"],
                    d=t[p + "ffn_down.weight"]))
        self.n_vocab = self.emb.shape[0]

    def _rms(self, x, w):
        np = self.np
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def _rope(self, x, pos):
        """x: [n, heads, hd]; halves layout (x[i], x[i + hd/2])."""
        np = self.np
        half = self.hd // 2
        inv = self.base ** (-np.arange(half) * 2.0 / self.hd)
        ang = (pos * self.pos_scale)[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)

    def logprobs(self, chunk):
        np = self.np
        n = len(chunk)
        pos = np.arange(n, dtype=np.float64)
        x = self.emb[np.array(chunk)]
        mask = np.triu(np.full((n, n), -np.inf), 1)
        grp = self.nh // self.nkv
        for ly in self.layers:
            h = self._rms(x, ly["an"])
            q = self._rope((h @ ly["q"].T).reshape(n, self.nh, self.hd), pos)
            k = self._rope((h @ ly["k"].T).reshape(n, self.nkv, self.hd), pos)
            v = (h @ ly["v"].T).reshape(n, self.nkv, self.hd)
            k, v = np.repeat(k, grp, axis=1), np.repeat(v, grp, axis=1)
            att = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(self.hd) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            o = np.einsum("hqk,khd->qhd", att, v).reshape(n, self.nh * self.hd)
            x = x + o @ ly["o"].T
            h = self._rms(x, ly["fn"])
            g = h @ ly["g"].T
            x = x + ((g / (1.0 + np.exp(-g))) * (h @ ly["u"].T)) @ ly["d"].T
        logits = self._rms(x, self.norm) @ self.out.T
        mx = logits.max(-1, keepdims=True)
        return logits - mx - np.log(np.exp(logits - mx).sum(-1, keepdims=True))


# ---------------------------------------------------------------- main

def compare(a_path, b_path):
    def load(p):
        d = {}
        for line in open(p):
            f = line.split()
            if len(f) == 4:
                d[(int(f[0]), int(f[1]))] = (int(f[2]), float(f[3]))
        return d
    a, b = load(a_path), load(b_path)
    keys = sorted(set(a) & set(b))
    if not keys:
        raise SystemExit("no common (chunk, pos) lines")
    bad = [k for k in keys if a[k][0] != b[k][0]]
    if bad:
        raise SystemExit(f"target ids differ at {bad[:5]}")
    d = [abs(a[k][1] - b[k][1]) for k in keys]
    nll_a = -sum(a[k][1] for k in keys) / len(keys)
    nll_b = -sum(b[k][1] for k in keys) / len(keys)
    print(f"{len(keys)} tokens (only in A: {len(set(a) - set(b))}, only in B: {len(set(b) - set(a))})")
    print(f"max |dlogprob| {max(d):.3g}, mean {sum(d) / len(d):.3g}")
    print(f"mean NLL A {nll_a:.6f} (PPL {math.exp(nll_a):.4f}), B {nll_b:.6f} (PPL {math.exp(nll_b):.4f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__[__doc__.index("Input:"):])
    ap.add_argument("--model", help="HF directory or .gguf file")
    ap.add_argument("--ids", help="text file of token ids")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=None, help="at most this many chunks")
    ap.add_argument("--bos", type=int, default=None, help="replace each chunk's first token")
    ap.add_argument("--first", default="0",
                    help="first scored position: a number, or 'half' for n_ctx/2 (llama.cpp)")
    ap.add_argument("--backend", choices=("torch", "numpy"), default="torch")
    ap.add_argument("--out", default="-")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="diff two output files")
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    if not args.model or not args.ids:
        ap.error("--model and --ids are required")
    first = args.n_ctx // 2 if args.first == "half" else int(args.first)
    if not 0 <= first <= args.n_ctx - 2:
        ap.error("--first must lie in 0 .. n_ctx-2")
    ids = read_ids(args.ids)
    be = TorchBackend(args.model) if args.backend == "torch" else NumpyBackend(args.model)
    if ids and (min(ids) < 0 or max(ids) >= be.n_vocab):
        raise SystemExit(f"{args.ids}: ids must lie in 0 .. {be.n_vocab - 1}")
    out = sys.stdout if args.out == "-" else open(args.out, "w")
    total, count = 0.0, 0
    for c, chunk in chunks_of(ids, args.n_ctx, args.chunks, args.bos):
        lp = be.logprobs(chunk)
        for i in range(first, args.n_ctx - 1):
            v = float(lp[i][chunk[i + 1]])
            out.write(f"{c}\t{i}\t{chunk[i + 1]}\t{v:.9g}\n")
            total -= v
            count += 1
    if out is not sys.stdout:
        out.close()
    if count:
        print(f"{count} tokens, mean NLL {total / count:.6f}, PPL {math.exp(total / count):.4f}",
              file=sys.stderr)
    else:
        print("no chunk scored (fewer ids than n_ctx?)", file=sys.stderr)


if __name__ == "__main__":
    main()
