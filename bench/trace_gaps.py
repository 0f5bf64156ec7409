#!/usr/bin/env python3
"""Where the device sat idle: reads a QEVAL_PROFILE_TRACE file (lib/cl.h:
name, queued, start, end in ns, one launch a line) and splits it into
segments at idle gaps longer than --split ms (a host round trip: the end of
a prefill, a blocking read). For each segment: its span (first start to last
end), the time some kernel ran (the union of the launches, which may overlap
across queues), the idle rest, and the largest gaps with the kernels on
either side. Kernels whose names match --drop (probes) are left out.

    QEVAL_PROFILE_TRACE=/tmp/t.tsv qeval bench ... --profile
    python3 bench/trace_gaps.py /tmp/t.tsv [--split 0.5] [--top 5]
"""
import argparse
import re
import sys


def read(path, drop):
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                sys.exit(f"{path}:{i}: expected 4 tab-separated fields, got {len(parts)}")
            try:
                q, s, e = (int(x) for x in parts[1:])
            except ValueError:
                sys.exit(f"{path}:{i}: expected integer times, got {parts[1:]}")
            if drop and re.search(drop, parts[0]):
                continue
            rows.append((s, e, parts[0]))
    rows.sort()
    return rows


def segments(rows, split_ns):
    seg, end = [], None
    for r in rows:
        if seg and r[0] - end > split_ns:
            yield seg
            seg = []
        end = max(end, r[1]) if seg else r[1]
        seg.append(r)
    if seg:
        yield seg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--split", type=float, default=0.5, help="idle ms that end a segment (0.5)")
    ap.add_argument("--top", type=int, default=5, help="largest gaps shown a segment (5)")
    ap.add_argument("--drop", default="^probe_", help="regex of kernel names left out (^probe_)")
    a = ap.parse_args()
    rows = read(a.trace, a.drop)
    if not rows:
        sys.exit(f"{a.trace}: no launches")
    for n, seg in enumerate(segments(rows, a.split * 1e6)):
        busy, gaps, cur_s, cur_e, prev = 0, [], seg[0][0], seg[0][1], seg[0][2]
        for s, e, name in seg[1:]:
            if s > cur_e:
                busy += cur_e - cur_s
                gaps.append((s - cur_e, prev, name))
                cur_s = s
            cur_e = max(cur_e, e)
            prev = name
        busy += cur_e - cur_s
        span = cur_e - seg[0][0]
        print(f"segment {n}: {len(seg)} launches, span {span / 1e6:.3f} ms, busy {busy / 1e6:.3f} ms, "
              f"idle {(span - busy) / 1e6:.3f} ms in {len(gaps)} gaps")
        for g, before, after in sorted(gaps, reverse=True)[: a.top]:
            print(f"    {g / 1e3:9.1f} us  {before} -> {after}")


if __name__ == "__main__":
    main()
