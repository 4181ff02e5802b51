"""voxport.bench.wasm_profile: per-node medians drop a preempted call, and on the tiny codec both
runtimes profile every node of the same graph (onnxruntime-web under Node against native)."""

from __future__ import annotations

import shutil

import onnx
import pytest

from voxport.bench import wasm_profile as wp
from voxport.errors import InputError
from voxport.serve import WEB_ROOT


def _run(ts: float, dur: float) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def _node(name: str, op: str, ts: float, dur: float) -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_medians_drop_a_preempted_call_and_the_first_run():
    events = [_run(0, 1000), _node("a", "Conv", 10, 900),  # the first run (allocations): left out
              _run(2000, 100), _node("a", "Conv", 2010, 40), _node("b", "Elu", 2060, 10),
              _run(3000, 5100), _node("a", "Conv", 3010, 5000), _node("b", "Elu", 5060, 12),  # "a" preempted
              _run(9000, 100), _node("a", "Conv", 9010, 42), _node("b", "Elu", 9060, 11)]
    k = wp.kernel_medians(events)
    assert k["nodes"] == {"a": ("Conv", 0.042), "b": ("Elu", 0.011)}  # microseconds in, ms out
    assert k["run_ms"] == pytest.approx(0.1)
    assert wp.by_op({"a": ("Conv", 1.5), "c": ("Conv", 0.5), "b": ("Elu", 0.25)}) == {"Conv": (2, 2.0),
                                                                                     "Elu": (1, 0.25)}


def test_too_few_runs_and_bad_dims_are_refused(tiny_dir):
    with pytest.raises(InputError, match="ask for more calls"):
        wp.kernel_medians([_run(0, 10)])
    with pytest.raises(InputError, match="calls must be >= 2"):
        wp.profile(tiny_dir, "mimi_decoder_stream", calls=1)
    assert wp.main([str(tiny_dir), "--graph", "mimi_decoder_stream", "--dims", "frames"]) == 2


def test_tiny_codec_profiled_in_wasm_and_native(tiny_dir):
    if shutil.which("node") is None or not (WEB_ROOT / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("node or web/node_modules missing (`make test` runs npm ci)")
    p = wp.profile(tiny_dir, "mimi_decoder_stream", threads=1, calls=3, rounds=1, dims={"frames": 2})
    w, n = p["wasm"], p["native"]
    assert p["wasm_threads"] == 1 and len(p["load_avg"]) == 2
    # the same optimized graph on both sides: every node of one run profiled, the same op mix
    assert set(w["nodes"]) == set(n["nodes"]) and len(w["nodes"]) > 100
    assert {op: c for op, (c, _) in w["ops"].items()} == {op: c for op, (c, _) in n["ops"].items()}
    assert {"Conv", "MatMul", "Elu"} <= set(w["ops"])
    assert all(ms >= 0 for _, ms in w["nodes"].values()) and w["run_ms"] > 0 and n["run_ms"] > 0
    graph = onnx.load(str(tiny_dir / "onnx" / "mimi_decoder_stream.onnx"), load_external_data=False)
    convs = sum(node.op_type == "Conv" for node in graph.graph.node)  # the optimizer fuses none of them
    table = wp.markdown(p)
    assert f"| Conv | {convs}/{convs} |" in table and "kernels (node medians summed)" in table
