#!/usr/bin/env python3
"""torch_peer.py - the PyTorch / Hugging Face peer of qeval's speed measurements.

Builds a randomly initialised Hugging Face LlamaForCausalLM with the same
configuration as a `qeval synth` model (the architecture table is
bench/archs.json, the copy of `qeval synth --list --json`; the same size
overrides, with the same rule: changing --dim or --heads without --head-dim
makes head_dim = dim / heads), in float16 with attn_implementation="sdpa", on
one CUDA GPU, and measures:

  prefill  perplexity-style: batches of B x L token sequences (L = 512,
           token 0 is BOS, the rest uniform random ids) through the model;
           logits only for the scored positions - the second half, as
           llama-perplexity scores a chunk (positions L/2-1 .. L-2 predict
           tokens L/2 .. L-1) - then float32 log-softmax and the targets' NLL.
           tokens/s counts all B x L positions processed. B in {1, 8, 32}.
           qeval's test that does this work is `qeval bench --ppl 512`.
  prefill-last  llama-bench's pp test: the same batches, logits of the last
           position only (logits_to_keep=1) and their float32 log-softmax:
           the peer of `qeval bench -p 512`. Its JSON record is measurement
           "prefill" with "logits": "last" (the other: "scored").
  decode   tg128: B sequences of one BOS token each generate 128 tokens with a
           static KV cache: `generate(cache_implementation="static",
           min_new_tokens=max_new_tokens=128)` (default; transformers compiles
           the forward for a static cache unless --compile off), or a manual
           loop over StaticCache (--decode loop; with --compile auto it wraps
           the model in torch.compile(mode="reduce-overhead"), but with
           transformers 5.17 inductor skips CUDA graphs there because the
           cache mutates a counter, so batch 1 stays launch-bound: use the
           default for the fast HF number). tokens/s = B x 128 / time.
           B in {1, 64}.
  copy     device-to-device copy bandwidth (torch Tensor.copy_ of a
           --copy-mib buffer) for the roofline: GB/s counting bytes read plus
           bytes written, and bytes copied.

Each measurement: --warmup runs (default 1), then --reps timed runs (default
5), each timed with CUDA events after torch.cuda.synchronize(); reported as
median, mean and sample standard deviation. One JSON object per measurement
goes to stdout (and to --out FILE, appended, JSON lines); a human-readable
line goes to stderr.

Runs only where torch, transformers and a CUDA GPU are (the GPU machine:
torch 2.11, transformers 5.17). Not part of `make check`, which only checks
that this file compiles and that --print-config (which needs neither torch nor
a GPU) agrees with `qeval synth --plan --json`.

Measured on the GPU machine (nvidia-h200, torch 2.11.0+cu130, transformers
5.17.0, 2026-11-22), llama-3.2-1b, medians of 5: copy 4253 GB/s read+write;
prefill 52,950 / 170,160 / 176,395 tokens/s at B = 1 / 8 / 32; decode
(generate, compiled) 373 / 17,567 tokens/s at B = 1 / 64 (eager, medians of
3: 71 / 5,155).

Commands (from the repository root on the GPU machine):
  python3 bench/torch_peer.py --arch llama-3.2-1b --out results/torch_peer.jsonl
  python3 bench/torch_peer.py --arch smollm2-135m --measure prefill --prefill-batches 1,8
  python3 bench/torch_peer.py --arch qwen2.5-0.5b --measure decode --decode loop --compile off
  python3 bench/torch_peer.py --arch llama-3.2-1b --print-config     # no torch needed
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Size overrides, in qeval synth's order: (option, archs.json key, label).
OVERRIDES = [
    ("dim", "dim", "dim"),
    ("layers", "n_layers", "layers"),
    ("heads", "n_heads", "heads"),
    ("kv_heads", "n_kv_heads", "kv_heads"),
    ("head_dim", "head_dim", "head_dim"),
    ("ffn", "n_ff", "ffn"),
    ("vocab", "n_vocab", "vocab"),
    ("ctx", "n_ctx", "ctx"),
]


def load_arch(args):
    """The archs.json entry for --arch with the overrides applied, and its label."""
    with open(args.archs) as f:
        table = json.load(f)
    if args.arch not in table:
        raise SystemExit("torch_peer: unknown architecture '%s' (known: %s)"
                         % (args.arch, ", ".join(table)))
    a = dict(table[args.arch])
    label, parts = args.arch, []
    for opt, key, name in OVERRIDES:
        v = getattr(args, opt)
        if v is not None:
            a[key] = v
            parts.append("%s=%d" % (name, v))
    if args.untied and a["tied"]:
        a["tied"] = False
        parts.append("untied")
    if (args.dim is not None or args.heads is not None) and args.head_dim is None:
        if a["dim"] % a["n_heads"]:
            raise SystemExit("torch_peer: %d heads do not divide dim %d" % (a["n_heads"], a["dim"]))
        a["head_dim"] = a["dim"] // a["n_heads"]
    if a["n_heads"] % a["n_kv_heads"] or a["head_dim"] % 2:
        raise SystemExit("torch_peer: kv heads must divide heads and head_dim must be even")
    if parts:
        label += ":" + ",".join(parts)
    return a, label


def n_params(a):
    """Parameters of the tied/untied Llama (what qeval synth --plan reports)."""
    d, hd, ff = a["dim"], a["head_dim"], a["n_ff"]
    q, kv = a["n_heads"] * hd, a["n_kv_heads"] * hd
    layer = d * q + 2 * d * kv + q * d + 3 * d * ff + 2 * d
    return a["n_vocab"] * d * (1 if a["tied"] else 2) + a["n_layers"] * layer + d


def hf_config_kwargs(a, rope_parameters):
    """LlamaConfig keyword arguments for archs.json entry a. rope_parameters:
    True for transformers >= 5 (rope_parameters = {rope_type, rope_theta,
    ...}), False for 4.x (rope_theta + rope_scaling)."""
    kw = dict(
        vocab_size=a["n_vocab"],
        hidden_size=a["dim"],
        intermediate_size=a["n_ff"],
        num_hidden_layers=a["n_layers"],
        num_attention_heads=a["n_heads"],
        num_key_value_heads=a["n_kv_heads"],
        head_dim=a["head_dim"],
        max_position_embeddings=a["n_ctx"],
        rms_norm_eps=a["rms_eps"],
        tie_word_embeddings=a["tied"],
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    rs = a.get("rope_scaling")
    scaling = None
    if rs:
        assert rs["type"] == "llama3", rs
        scaling = {"rope_type": "llama3", "factor": rs["factor"],
                   "low_freq_factor": rs["low_freq_factor"],
                   "high_freq_factor": rs["high_freq_factor"],
                   "original_max_position_embeddings": rs["original_max_position_embeddings"]}
    if rope_parameters:
        rp = {"rope_type": "default", "rope_theta": a["rope_base"]}
        if scaling:
            rp.update(scaling)
        kw["rope_parameters"] = rp
    else:
        kw["rope_theta"] = a["rope_base"]
        kw["rope_scaling"] = scaling
    return kw


# ---- measurement helpers (torch imported lazily) ----

def summarize(values):
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "stddev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "values": values,
    }


class Timer:
    """Wall time of a GPU region between two CUDA events, synchronized."""

    def __init__(self, torch):
        self.torch = torch

    def __call__(self, fn):
        t = self.torch
        t.cuda.synchronize()
        a, b = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
        w0 = time.perf_counter()
        a.record()
        out = fn()
        b.record()
        t.cuda.synchronize()
        wall = time.perf_counter() - w0
        return a.elapsed_time(b) / 1000.0, wall, out


def emit(rec, args, human):
    line = json.dumps(rec, sort_keys=False)
    print(line, flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a") as f:
            f.write(line + "\n")
    print(human, file=sys.stderr, flush=True)


def build_model(torch, transformers, a, args):
    import inspect
    from transformers import LlamaConfig, LlamaForCausalLM

    use_rp = "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters
    cfg = LlamaConfig(**hf_config_kwargs(a, use_rp))
    torch.manual_seed(args.seed)
    dtype = torch.float16
    model = None
    with torch.device("cuda"):
        for dkey in ("dtype", "torch_dtype"):  # transformers 5 renamed torch_dtype
            try:
                model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa",
                                                      **{dkey: dtype})
                break
            except TypeError:
                continue
    if model is None:
        raise SystemExit("torch_peer: cannot build LlamaForCausalLM with this transformers")
    model = model.to(device="cuda", dtype=dtype).eval()
    got = sum(p.numel() for p in model.parameters())  # tied weights counted once
    impl = getattr(model.config, "_attn_implementation", None)
    return model, cfg, got, impl


def measure_prefill(torch, model, a, args, B, L, common, last=False):
    import inspect
    timer = Timer(torch)
    gen = torch.Generator(device="cuda").manual_seed(args.seed + B)
    ids = torch.randint(3, a["n_vocab"], (B, L), device="cuda", generator=gen)
    ids[:, 0] = 1  # BOS starts every chunk, as llama-perplexity does
    first = L // 2  # scored targets: positions first .. L-1
    keep = L - first + 1  # logits of positions first-1 .. L-1 (the last is dropped)
    if last:  # the last position's logits; its "target" is its own token (a stand-in)
        first, keep = L - 1, 1
    has_keep = "logits_to_keep" in inspect.signature(model.forward).parameters

    def run():
        with torch.inference_mode():
            if has_keep:
                logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
            else:
                logits = model(input_ids=ids, use_cache=False).logits[:, first - 1 - L:, :]
            if last:
                lp = torch.log_softmax(logits[:, -1:, :].float(), dim=-1)
                return -lp.gather(-1, ids[:, -1:].unsqueeze(-1)).sum()
            lp = torch.log_softmax(logits[:, :-1, :].float(), dim=-1)
            nll = -lp.gather(-1, ids[:, first:].unsqueeze(-1)).squeeze(-1)
            return nll.sum()

    for _ in range(args.warmup):
        timer(run)
    secs, walls, nlls = [], [], []
    for _ in range(args.reps):
        s, w, out = timer(run)
        secs.append(s)
        walls.append(w)
        nlls.append(out.item() / (B * max(L - first, 1)))
    tps = [B * L / s for s in secs]
    rec = dict(common, measurement="prefill", logits="last" if last else "scored", batch=B,
               seq_len=L, scored_per_seq=0 if last else L - first,
               logits_to_keep=has_keep, tokens_per_s=summarize(tps), seconds=summarize(secs),
               wall_seconds=summarize(walls), nll_mean=statistics.fmean(nlls),
               ppl=math.exp(statistics.fmean(nlls)))
    t = rec["tokens_per_s"]
    human = ("prefill%s %-28s B=%-3d L=%d  %10.0f tok/s median  (mean %.0f +- %.0f, n=%d)  nll %.3f"
             % ("-last" if last else "", common["label"], B, L, t["median"], t["mean"], t["stddev"], t["n"], rec["nll_mean"]))
    return rec, human


def make_static_cache(torch, cfg, B, max_len):
    from transformers import StaticCache
    try:  # transformers 4.4x-4.5x
        return StaticCache(config=cfg, max_batch_size=B, max_cache_len=max_len, device="cuda",
                           dtype=torch.float16)
    except TypeError:  # transformers 5: batch size and dtype taken at first update
        return StaticCache(config=cfg, max_cache_len=max_len)


def measure_decode(torch, model, cfg, a, args, B, common):
    timer = Timer(torch)
    n_gen = args.gen
    ids = torch.ones((B, 1), dtype=torch.long, device="cuda")  # BOS
    mask = torch.ones_like(ids)
    path = args.decode
    fwd = model
    if path == "loop" and args.compile == "auto":
        fwd = torch.compile(model, mode="reduce-overhead", fullgraph=True)

    def run_generate():
        with torch.inference_mode():
            kw = dict(max_new_tokens=n_gen, min_new_tokens=n_gen, do_sample=False,
                      cache_implementation="static", pad_token_id=0)
            if args.compile == "off":
                kw["disable_compile"] = True
            out = model.generate(ids, attention_mask=mask, **kw)
        return out.shape[1] - 1

    cache = None
    compiled = fwd is not model
    if path == "loop":
        cache = make_static_cache(torch, cfg, B, n_gen + 1)
        # One eager step allocates the cache buffers (transformers 5 does it
        # lazily) outside any compiled graph, so CUDA graphs never own them.
        with torch.inference_mode():
            pos = torch.tensor([0], device="cuda")
            model(input_ids=ids, past_key_values=cache, cache_position=pos,
                  position_ids=pos.unsqueeze(0).expand(B, 1), use_cache=True)

    def run_loop():
        tok = ids
        with torch.inference_mode():
            cache.reset()  # the same buffers every run (CUDA graphs keep their addresses)
            for step in range(n_gen):
                pos = torch.tensor([step], device="cuda")
                if compiled:  # a new step: earlier graph outputs may be overwritten
                    torch.compiler.cudagraph_mark_step_begin()
                out = fwd(input_ids=tok, past_key_values=cache, cache_position=pos,
                          position_ids=pos.unsqueeze(0).expand(B, 1), use_cache=True)
                tok = out.logits[:, -1:, :].argmax(-1)
        return n_gen

    run = run_generate if path == "generate" else run_loop
    for _ in range(args.warmup):
        timer(run)
    secs, walls = [], []
    for _ in range(args.reps):
        s, w, made = timer(run)
        if made != n_gen:
            raise SystemExit("torch_peer: decode made %d tokens, expected %d" % (made, n_gen))
        secs.append(s)
        walls.append(w)
    tps = [B * n_gen / s for s in secs]
    rec = dict(common, measurement="decode", batch=B, n_gen=n_gen, decode_path=path,
               compile=args.compile, tokens_per_s=summarize(tps), seconds=summarize(secs),
               wall_seconds=summarize(walls))
    t = rec["tokens_per_s"]
    human = ("decode   %-28s B=%-3d tg%d  %10.1f tok/s median  (mean %.1f +- %.1f, n=%d)  [%s, compile %s]"
             % (common["label"], B, n_gen, t["median"], t["mean"], t["stddev"], t["n"], path,
                args.compile))
    return rec, human


def measure_copy(torch, args, common):
    timer = Timer(torch)
    n = args.copy_mib << 20
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 256)
    dst = torch.empty_like(src)
    inner = 10  # copies per timed run, to amortize the launch

    def run():
        for _ in range(inner):
            dst.copy_(src)

    for _ in range(args.warmup):
        timer(run)
    secs = [timer(run)[0] / inner for _ in range(args.reps)]
    if not torch.equal(src, dst):
        raise SystemExit("torch_peer: copy check failed")
    rw = [2 * n / s / 1e9 for s in secs]
    rec = dict(common, measurement="copy", bytes=n, gb_per_s_read_plus_write=summarize(rw),
               gb_per_s_copied=summarize([n / s / 1e9 for s in secs]),
               seconds_per_copy=summarize(secs))
    t = rec["gb_per_s_read_plus_write"]
    human = ("copy     %-28s %d MiB  %8.0f GB/s read+write median  (mean %.0f +- %.0f, n=%d)"
             % ("device-to-device", args.copy_mib, t["median"], t["mean"], t["stddev"], t["n"]))
    return rec, human


def parse_list(s):
    return [int(x) for x in s.split(",") if x.strip()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--arch", required=True, help="a name from bench/archs.json")
    p.add_argument("--archs", default=os.path.join(HERE, "archs.json"))
    for opt, _, _ in OVERRIDES:
        p.add_argument("--" + opt.replace("_", "-"), dest=opt, type=int)
    p.add_argument("--untied", action="store_true")
    p.add_argument("--measure", default="prefill,decode,copy")
    p.add_argument("--prefill-batches", default="1,8,32")
    p.add_argument("--prefill-len", type=int, default=512)
    p.add_argument("--decode-batches", default="1,64")
    p.add_argument("--gen", type=int, default=128, help="tokens generated per sequence")
    p.add_argument("--decode", choices=("generate", "loop"), default="generate")
    p.add_argument("--compile", choices=("auto", "off"), default="auto",
                   help="auto: generate() compiles for the static cache as transformers decides, "
                        "loop uses torch.compile(mode='reduce-overhead'); off: eager")
    p.add_argument("--copy-mib", type=int, default=1024)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="append the JSON lines to this file too")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved architecture, parameter count and LlamaConfig "
                        "arguments as JSON and exit (needs neither torch nor a GPU)")
    args = p.parse_args(argv)
    if args.reps < 1 or args.warmup < 0 or args.prefill_len < 2 or args.gen < 1:
        p.error("--reps >= 1, --warmup >= 0, --prefill-len >= 2, --gen >= 1")
    a, label = load_arch(args)

    if args.print_config:
        print(json.dumps({"arch": label, "config": a, "n_params": n_params(a),
                          "hf_v5": hf_config_kwargs(a, True),
                          "hf_v4": hf_config_kwargs(a, False)}, indent=2))
        return 0

    import torch
    import transformers
    if not torch.cuda.is_available():
        raise SystemExit("torch_peer: no CUDA device")
    measures = [m.strip() for m in args.measure.split(",") if m.strip()]
    for m in measures:
        if m not in ("prefill", "prefill-last", "decode", "copy"):
            p.error("unknown measurement '%s'" % m)
    common = {
        "tool": "torch_peer",
        "label": label,
        "arch": args.arch,
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "dtype": "float16",
        "warmup": args.warmup,
        "reps": args.reps,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if "copy" in measures:
        rec, human = measure_copy(torch, args, common)
        emit(rec, args, human)
    if {"prefill", "prefill-last", "decode"} & set(measures):
        t0 = time.perf_counter()
        model, cfg, got, impl = build_model(torch, transformers, a, args)
        want = n_params(a)
        common = dict(common, config=a, n_params=got, attn_implementation=impl,
                      build_seconds=round(time.perf_counter() - t0, 3))
        print("# %s: %d parameters (qeval synth plans %d), attention %s, built in %.1f s"
              % (label, got, want, impl, common["build_seconds"]), file=sys.stderr)
        if got != want:
            raise SystemExit("torch_peer: the model has %d parameters, the architecture %d"
                             % (got, want))
        if "prefill" in measures:
            for B in parse_list(args.prefill_batches):
                rec, human = measure_prefill(torch, model, a, args, B, args.prefill_len, common)
                emit(rec, args, human)
                torch.cuda.empty_cache()
        if "prefill-last" in measures:
            for B in parse_list(args.prefill_batches):
                rec, human = measure_prefill(torch, model, a, args, B, args.prefill_len, common,
                                             last=True)
                emit(rec, args, human)
                torch.cuda.empty_cache()
        if "decode" in measures:
            for B in parse_list(args.decode_batches):
                rec, human = measure_decode(torch, model, cfg, a, args, B, common)
                emit(rec, args, human)
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
