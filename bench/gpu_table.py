#!/usr/bin/env python3
"""gpu_table.py - one table from `qeval bench -o json` and bench/torch_peer.py's
JSON lines, measured in the same run on the same GPU (bench/gpu.sh).

For each qeval result: tokens/s (the median of its repetitions, as PyTorch's
figure is, +- their sample stddev; the mean where a result has no samples),
PyTorch fp16's median tokens/s for the same test and batch, the ratio of the
medians, and the fraction of a roofline:
  decode (tgN):  B * copy_bw / weight_bytes  - every step streams the weights
                 once; copy_bw = the measured device-to-device copy rate
                 (bytes read + written per second);
  prefill (ppN, pplN): peak / (2 * n_params) - FLOPs per token of the matrix
                 products (attention ignored); peak = the tensor-core f16
                 peak (--tc-tflops) for PyTorch and for qeval rows measured
                 with gemm "mma", the FP32 non-tensor-core peak
                 (--fp32-tflops) for qeval's f32 kernels.
PyTorch's "prefill" is perplexity-style (the LM head, log-softmax and the
targets' NLL for the second half of each sequence): it is set against
qeval's pplN rows, which do the same work. Its "prefill-last" (the head for
the last position only, llama-bench's pp) is set against qeval's ppN rows.
usage: gpu_table.py QEVAL.json TORCH.jsonl [--fp32-tflops 67] [--tc-tflops 989]
"""
import argparse
import json
import statistics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("qeval")
    ap.add_argument("torch")
    ap.add_argument("--fp32-tflops", type=float, default=67.0)
    ap.add_argument("--tc-tflops", type=float, default=989.0)
    a = ap.parse_args()
    with open(a.qeval) as f:
        q = json.load(f)
    peer = [json.loads(l) for l in open(a.torch) if l.strip().startswith("{")]
    copy = [r for r in peer if r["measurement"] == "copy"]
    bw = copy[0]["gb_per_s_read_plus_write"]["median"] * 1e9 if copy else None
    pt = {}
    for r in peer:
        if r["measurement"] == "prefill":  # "logits" absent: scored (before it was recorded)
            pt[("pp" if r.get("logits") == "last" else "ppl", r["seq_len"], r["batch"])] = r
        elif r["measurement"] == "decode":
            pt[("tg", r["n_gen"], r["batch"])] = r
    print("device: %s; copy %.0f GB/s (read+write); torch %s, transformers %s"
          % (q[0]["device"] if q else "?", (bw or 0) / 1e9,
             peer[0].get("torch", "?") if peer else "?", peer[0].get("transformers", "?") if peer else "?"))
    print()
    print("| test | B | weights | KV | gemm | qeval tok/s (median ± sd) | PyTorch fp16 tok/s (median) | qeval/PyTorch | qeval % of roofline | PyTorch % of roofline |")
    print("|---|---:|---|---|---|---:|---:|---:|---:|---:|")
    for r in q:
        kind = "tg" if r["n_gen"] > 0 else "ppl" if r["test"].startswith("ppl") else "pp"
        size = r["n_gen"] if kind == "tg" else r["n_prompt"]
        B = r["n_batch"]
        p = pt.get((kind, size, B))
        ptps = p["tokens_per_s"]["median"] if p else None
        if kind == "tg":
            roof_q = B * bw / r["weight_bytes"] if bw else None
            roof_p = B * bw / (2 * r["n_params"]) if bw else None  # fp16 weights
        else:
            peak = a.tc_tflops if r.get("gemm") == "mma" else a.fp32_tflops
            roof_q = peak * 1e12 / (2 * r["n_params"])
            roof_p = a.tc_tflops * 1e12 / (2 * r["n_params"])
        kv = r["kv_k"] if r["kv_k"] == r["kv_v"] else r["kv_k"] + "/" + r["kv_v"]
        tps = statistics.median(r["samples_tps"]) if r.get("samples_tps") else r["mean_tps"]
        print("| %s%d | %d | %s | %s | %s | %.1f ± %.1f | %s | %s | %s | %s |" % (
            kind, size, B, r["weights"], kv, r.get("gemm", "f32"), tps, r["stddev_tps"],
            "%.1f" % ptps if ptps else "-",
            "%.2f" % (tps / ptps) if ptps else "-",
            "%.1f %%" % (100 * tps / roof_q) if roof_q else "-",
            "%.1f %%" % (100 * ptps / roof_p) if (ptps and roof_p) else "-"))


if __name__ == "__main__":
    main()
