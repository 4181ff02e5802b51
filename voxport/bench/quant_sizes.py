"""Size, speed and SNR per precision variant of an exported artifact set (the table in the issue-4 note).

    .venv/bin/python voxport/bench/quant_sizes.py DIR [--threads 2] [--runs 20] [--no-snr]

Speed: the per-frame work without the fused `frame` graph (not on this branch): one backbone step at a
past of 100 positions, plus the depth decoder's 31 steps (one 2-token call, then 30 one-token calls),
each timed on its own (median of --runs) and summed. A graph named `frame` in the manifest is timed too.
SNR: validation.fidelity at the spec's check sizes (worst case per graph) against fp32 PyTorch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from voxport.runtime.graphs import Graphs
from voxport import manifest as mf


def _feeds(spec: list[dict], sizes: dict, rng) -> dict:
    out = {}
    for s in spec:
        shape = [sizes[a] if isinstance(a, str) else a for a in s["shape"]]
        if s["dtype"] == "int64":
            hi = 2 if s["name"] == "attention_mask" else 100
            out[s["name"]] = np.ones(shape, np.int64) if hi == 2 else rng.integers(0, hi, shape).astype(np.int64)
        else:
            out[s["name"]] = rng.standard_normal(shape).astype(np.float32) * 0.5
    return out


def _time(graphs: Graphs, name: str, feeds: dict, runs: int) -> float:
    sess = graphs.session(name)
    sess.run(None, feeds)  # warm-up: allocations, prepacking
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        t.append(time.perf_counter() - t0)
    return statistics.median(t) * 1e3


def speeds(d: Path, dtype: str, threads: int, runs: int) -> dict:
    g = Graphs(d, threads=threads, dtype=dtype)
    m, rng = g.manifest, np.random.default_rng(0)
    k = m["runtime"]["num_codebooks"]
    out = {}
    bb = m["graphs"]["backbone"]["inputs"]
    out["backbone_step_ms"] = _time(g, "backbone", _feeds(bb, {"batch": 1, "seq": 1, "past": 100, "past_seq": 101}, rng), runs)
    dp = m["graphs"]["depth"]["inputs"]
    first = _time(g, "depth", _feeds(dp, {"batch": 1, "seq": 2, "past": 0}, rng), runs)
    step = _time(g, "depth", _feeds(dp, {"batch": 1, "seq": 1, "past": k // 2}, rng), runs)
    out["depth_step_ms"] = step
    out["frame_ms_from_steps"] = out["backbone_step_ms"] + first + (k - 2) * step
    if "frame" in m["graphs"]:  # the lead's fused graph, once merged
        sizes = {"batch": 1, "seq": 1, "past": 100, "past_seq": 101, "capacity": 128}
        out["frame_ms"] = _time(g, "frame", _feeds(m["graphs"]["frame"]["inputs"], sizes, rng), runs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-snr", action="store_true")
    ap.add_argument("--frames", type=int, default=10, help="greedy frames for code agreement (0: skip)")
    a = ap.parse_args()
    d = Path(a.dir)
    m = mf.load(d)
    rows = {}
    for dtype in m["dtypes"]:
        rows[dtype] = {"MB": mf.variant_bytes(m, dtype) / 1e6, **speeds(d, dtype, a.threads, a.runs)}
        print(dtype, json.dumps({k: round(v, 1) for k, v in rows[dtype].items()}), flush=True)
    snr = {}
    if not a.no_snr:
        from voxport.validation.fidelity import run

        f = run(d, m["dtypes"], frames=a.frames, end_to_end=a.frames > 0, progress=lambda s: print(s, flush=True))
        for r in f["summary"]:
            if r["metric"] == "snr_db" and not r["output"].startswith("present."):
                key = (r["graph"], r["dtype"])
                snr[key] = min(snr.get(key, 1e9), r["value"])
        print("fidelity", "PASS" if f["ok"] else "FAIL", f["failures"])
    graphs = sorted({g for g, _ in snr})
    print("\n| variant | MB | backbone step ms | depth step ms | frame ms (1 + 31 steps) | "
          + " | ".join(f"SNR {g} dB" for g in graphs) + " |")
    print("|---|---|---|---|---|" + "---|" * len(graphs))
    for dtype, r in rows.items():
        cells = " | ".join(f"{snr[(g, dtype)]:.1f}" for g in graphs)
        print(f"| {dtype} | {r['MB']:.0f} | {r['backbone_step_ms']:.1f} | {r['depth_step_ms']:.1f} | "
              f"{r['frame_ms_from_steps']:.0f} | {cells} |")
    (d / "bench.json").write_text(json.dumps({"speed": rows, "snr": {f"{g}/{t}": v for (g, t), v in snr.items()}},
                                             indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
