"""Where a graph's time goes in the page's wasm build against native onnxruntime, kernel by kernel.

    python -m voxport.bench.wasm_profile ARTIFACT_DIR --graph mimi_decoder_stream [--dtype fp32]
        [--threads 2] [--calls 12] [--rounds 2] [--dims capacity=64 frames=1] [--tier steady|cold] [--md out.md]

The same feeds (zeros, symbolic dims from --dims, 1 where unnamed) go through one session of the graph
in onnxruntime-web (wasm, the page's session options, run by Node: voxport/bench/wasm_profile.mjs) and
one of native onnxruntime (CPU), both with session profiling, alternately (native, wasm, wasm, native,
... `rounds` times), so both see the same load. Per node, the median of its kernel time over the calls
(the first call of each round left out: allocations) is kept: on a shared machine a preempted thread
adds milliseconds to whichever node it was running, and a median drops that. Per op type, the node
medians are summed.

`--tier steady` (the default) runs Node with `--no-liftoff`: V8 compiles every wasm function with its
optimizing compiler before the first call, which is what a page runs once V8 has tiered its hot
functions up. `--tier cold` leaves V8's default (baseline code first, optimized in the background as
functions get hot): what the first calls of a fresh page run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx

from voxport import manifest as mf
from voxport.errors import InputError

MJS = Path(__file__).with_suffix(".mjs")
NUMPY = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32",
         onnx.TensorProto.BOOL: "bool"}


def zero_feeds(graph: Path, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """Zeros for every input of the graph; a symbolic dim takes dims[name], else 1."""
    model = onnx.load(str(graph), load_external_data=False)
    feeds = {}
    for i in model.graph.input:
        t = i.type.tensor_type
        if t.elem_type not in NUMPY:
            raise InputError(f"{graph.name}: input {i.name} has element type {t.elem_type}, not one this tool feeds")
        shape = [d.dim_value if d.HasField("dim_value") else dims.get(d.dim_param, 1) for d in t.shape.dim]
        feeds[i.name] = np.zeros(shape, NUMPY[t.elem_type])
    return feeds


def kernel_medians(events: list[dict], skip: int = 1) -> dict:
    """A profile's events -> {"run_ms": median model_run, "nodes": {node: (op, median ms)}}, the first
    `skip` runs left out. Kernel events carry the run they belong to only by time: each falls inside
    one model_run span."""
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[skip:]
    if not runs:
        raise InputError(f"the profile holds {skip} run(s) or fewer: ask for more calls")
    per_node: dict[str, list[float]] = defaultdict(list)
    ops = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if not any(r["ts"] <= e["ts"] <= r["ts"] + r["dur"] for r in runs):
            continue
        name = e["name"][: -len("_kernel_time")]
        per_node[name].append(e["dur"] / 1000)
        ops[name] = e["args"]["op_name"]
    return {"run_ms": statistics.median(r["dur"] / 1000 for r in runs),
            "nodes": {n: (ops[n], statistics.median(v)) for n, v in per_node.items()}}


def by_op(nodes: dict) -> dict[str, tuple[int, float]]:
    """{op: (nodes, summed median ms)}."""
    out: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for op, ms in nodes.values():
        out[op][0] += 1
        out[op][1] += ms
    return {k: (n, ms) for k, (n, ms) in out.items()}


def _native(graph: Path, feeds: dict, threads: int, calls: int, work: Path) -> tuple[list[dict], list[float]]:
    import time

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling, so.profile_file_prefix = True, str(work / "native")
    sess = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
    wall = []
    for _ in range(calls):
        t = time.perf_counter()
        sess.run(None, feeds)
        wall.append((time.perf_counter() - t) * 1000)
    return json.loads(Path(sess.end_profiling()).read_text()), wall


def _wasm(feeds_dir: Path, threads: int, calls: int, tier: str) -> tuple[list[dict], list[float], int]:
    node = shutil.which("node")
    if node is None:
        raise InputError("node is not on PATH (the wasm half runs onnxruntime-web under Node)")
    flags = ["--no-liftoff"] if tier == "steady" else []
    # stdout into a file: onnxruntime-web writes the profile with synchronous writes, which fail with
    # EAGAIN on a full pipe
    with open(feeds_dir / "wasm.out", "w+") as sink:
        out = subprocess.run([node, *flags, str(MJS), str(feeds_dir), str(threads), str(calls)], stdout=sink,
                             stderr=subprocess.PIPE, text=True, timeout=1800)
        sink.seek(0)
        stdout = sink.read()
    if out.returncode != 0:
        raise RuntimeError(f"onnxruntime-web failed: {out.stderr.strip()[-500:]}")
    text, _, last = stdout.strip().rpartition("\n")  # the profile's events, then the call times
    tail = json.loads(last)
    events = json.loads(text[text.index("["): text.rindex("]") + 1])
    return events, tail["run_ms"], tail["threads"]


def profile(artifact: Path, graph_name: str, dtype: str = "fp32", threads: int = 2, calls: int = 12,
            rounds: int = 2, dims: dict[str, int] | None = None, tier: str = "steady", log=lambda m: None) -> dict:
    """Both sides' per-node medians and call times, interleaved `rounds` times."""
    import os

    if calls < 2:
        raise InputError(f"calls must be >= 2 (the first of each round is left out), got {calls}")
    manifest = mf.load(artifact)
    files = mf.variant(manifest, graph_name, dtype, artifact)["files"]
    graph = artifact / files[0]["path"]
    feeds = zero_feeds(graph, dims or {})
    sides = {"wasm": defaultdict(list), "native": defaultdict(list)}
    run_ms = {"wasm": [], "native": []}
    call_ms = {"wasm": [], "native": []}
    loads, wasm_threads = [], None
    with tempfile.TemporaryDirectory(prefix="voxport-wasm-profile-") as tmp:
        work = Path(tmp)
        for i, a in enumerate(feeds.values()):
            (work / f"{i}.bin").write_bytes(a.tobytes())
        index = [{"name": n, "type": str(a.dtype), "dims": list(a.shape), "file": f"{i}.bin"}
                 for i, (n, a) in enumerate(feeds.items())]
        (work / "feeds.json").write_text(json.dumps({
            "graph": str(graph), "external": [str(artifact / e["path"]) for e in files[1:]], "inputs": index}))
        for r in range(rounds):
            for side in (("native", "wasm") if r % 2 == 0 else ("wasm", "native")):
                loads.append(round(os.getloadavg()[0], 2))
                if side == "native":
                    events, wall = _native(graph, feeds, threads, calls, work)
                else:
                    events, wall, wasm_threads = _wasm(work, threads, calls, tier)
                k = kernel_medians(events)
                for n, (op, ms) in k["nodes"].items():
                    sides[side][n].append((op, ms))
                run_ms[side].append(k["run_ms"])
                call_ms[side].append(statistics.median(wall[1:]))
                log(f"wasm_profile: round {r + 1}/{rounds} {side}: run {k['run_ms']:.1f} ms (load {loads[-1]})")
    out = {"graph": graph_name, "dtype": dtype, "threads": threads, "wasm_threads": wasm_threads, "calls": calls,
           "rounds": rounds, "tier": tier, "dims": dims or {}, "load_avg": loads}
    for side, nodes in sides.items():
        merged = {n: (v[0][0], statistics.median(ms for _, ms in v)) for n, v in nodes.items()}
        out[side] = {"run_ms": round(statistics.median(run_ms[side]), 2), "run_ms_rounds": [round(x, 2) for x in run_ms[side]],
                     "call_ms": round(statistics.median(call_ms[side]), 2), "nodes": merged, "ops": by_op(merged)}
    return out


def markdown(p: dict, top: int = 12) -> str:
    w, n = p["wasm"], p["native"]
    kw, kn = (sum(ms for _, ms in side["ops"].values()) for side in (w, n))
    gap = kw - kn
    lines = [f"{p['graph']} ({p['dtype']}), {p['threads']} threads, wasm tier {p['tier']}, dims {p['dims'] or 'all 1'}, "
             f"load {p['load_avg']}",
             f"model_run: wasm {w['run_ms']} ms, native {n['run_ms']} ms ({w['run_ms'] / n['run_ms']:.2f}x); "
             f"session.run: wasm {w['call_ms']} ms, native {n['call_ms']} ms",
             f"kernels (node medians summed): wasm {kw:.2f} ms, native {kn:.2f} ms ({kw / kn:.2f}x)",
             "", "| op | nodes wasm/native | wasm ms | native ms | ratio | share of the gap |", "|---|---|---|---|---|---|"]
    ops = sorted(set(w["ops"]) | set(n["ops"]), key=lambda k: -w["ops"].get(k, (0, 0.0))[1])
    for op in ops:
        (cw, mw), (cn, mn) = w["ops"].get(op, (0, 0.0)), n["ops"].get(op, (0, 0.0))
        ratio = f"{mw / mn:.1f}x" if mn > 0 else "-"
        share = f"{100 * (mw - mn) / gap:.0f}%" if gap > 0 else "-"
        lines.append(f"| {op} | {cw}/{cn} | {mw:.2f} | {mn:.2f} | {ratio} | {share} |")
    lines += ["", f"Slowest {top} wasm nodes (median ms; native's for the same node where it has one):", ""]
    for name, (op, ms) in sorted(w["nodes"].items(), key=lambda kv: -kv[1][1])[:top]:
        native = n["nodes"].get(name)
        lines.append(f"- {name} ({op}): {ms:.2f}" + (f" / {native[1]:.2f}" if native else " / -"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m voxport.bench.wasm_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", type=Path)
    p.add_argument("--graph", required=True)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=12)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dims", nargs="*", default=[], help="symbolic dims, NAME=N (unnamed ones are 1)")
    p.add_argument("--tier", choices=["steady", "cold"], default="steady")
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    a = p.parse_args(argv)
    try:
        dims = {k: int(v) for k, v in (d.split("=", 1) for d in a.dims)}
    except ValueError:
        print(f"error: --dims takes NAME=N, got {a.dims}", file=sys.stderr)
        return 2
    try:
        r = profile(a.artifact, a.graph, a.dtype, a.threads, a.calls, a.rounds, dims, a.tier,
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = markdown(r)
    print(table)
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))
    if a.md:
        a.md.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
