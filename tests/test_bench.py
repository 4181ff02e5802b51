"""`voxport bench --quick`: the result file has its schema, the reference and voxport produced the same
greedy codes in the same run, and the roofline counts what a frame really reads."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from voxport.bench import roofline, suite
from voxport.cli import main
from voxport.errors import InputError

ROW_KEYS = {"engine", "dtype", "label", "frames", "ms_per_frame", "prefill_frame_ms", "codec_ms_per_frame", "rtf",
            "first_audio_ms", "peak_rss_mb", "load_s", "calls_per_frame", "codes"}


@pytest.fixture(scope="module")
def quick(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--quick", "--artifacts", str(tiny_dir), "--out", str(out)]) == 0
    (path,) = out.glob("*-quick.json")
    return json.loads(path.read_text()), path


def test_quick_result_schema(quick):
    r, path = quick
    assert r["schema"] == suite.SCHEMA and r["settings"]["quick"] is True
    assert r["machine"]["cores"] >= 1 and r["machine"]["cpu"] and "onnxruntime" in r["machine"]["libraries"]
    assert r["bandwidth_gbs"] > 0.1
    (p,) = r["presets"]
    assert p["preset"] == "tiny" and p["frame_ms"] == pytest.approx(80.0)
    rows = {(x["engine"], x["dtype"]): x for x in p["results"]}
    assert set(rows) == {("pytorch", "fp32"), ("fused", "fp32"), ("steps", "fp32"), ("fused", "q4")}
    for row in rows.values():
        assert "error" not in row, row.get("error")
        assert ROW_KEYS <= set(row)
        m = row["ms_per_frame"]
        assert 0 < m["min"] <= m["p10"] <= m["median"] <= m["p90"] <= m["max"]
        assert row["rtf"] == pytest.approx((m["median"] + row["codec_ms_per_frame"]) / 80.0, rel=0.01, abs=1e-3)
        assert row["first_audio_ms"] > 0 and row["peak_rss_mb"] > row.get("base_rss_mb", 0)
    for d in ("fp32", "q4"):
        roof = p["roofline"][d]
        assert roof["bytes_read_per_frame"] > roof["bytes_stored"] * 0.5 and roof["floor_ms"] > 0
        assert rows[("fused", d)]["x_roofline"] == pytest.approx(
            rows[("fused", d)]["ms_per_frame"]["median"] / roof["floor_ms"], rel=0.02)
    # the fused rows also time the utterance streamed as `voxport speak` does: tiny's manifest names no
    # codec schedule, so one frame a call
    for d in ("fp32", "q4"):
        st = rows[("fused", d)]["streamed"]
        assert st["chunk_frames"] == [1] and st["rtf"] > 0 and st["first_audio_ms"] > 0 and st["other_cores"] >= 0
    assert "streamed: RTF, first audio ms (other cores busy)" in path.with_suffix(".md").read_text()
    # one runtime call per frame fused; embed + backbone + 31 depth steps in the step loop
    assert rows[("fused", "fp32")]["calls_per_frame"] == 1
    assert rows[("steps", "fp32")]["calls_per_frame"] == 33
    assert path.with_suffix(".md").is_file()
    assert (path.parent / f"{path.stem}-tiny-frame.png").stat().st_size > 10_000


def test_quick_codes_identical_to_pytorch(quick):
    rows = {(x["engine"], x["dtype"]): x for x in quick[0]["presets"][0]["results"]}
    ref = np.array(rows[("pytorch", "fp32")]["codes"])
    assert ref.shape == (quick[0]["settings"]["frames"], 32)
    for key in (("fused", "fp32"), ("steps", "fp32")):
        assert rows[key]["codes_vs_pytorch"]["identical"], rows[key]["codes_vs_pytorch"]
        assert np.array_equal(np.array(rows[key]["codes"]), ref)
    # the report says so, next to the speed-up
    assert rows[("fused", "fp32")]["speedup_vs_pytorch"] > 0
    assert "| identical |" in quick[1].with_suffix(".md").read_text()
    # llama.cpp's peer row: the family of the artifact's checkpoint has no llama-tts runner, built or not
    assert quick[0]["presets"][0]["peers"] == {"llama-tts": {"skipped": "llama.cpp's llama-tts runs no csm checkpoint"}}
    assert "llama-tts: skipped (llama.cpp's llama-tts runs no csm checkpoint)." in quick[1].with_suffix(".md").read_text()


def test_roofline_counts_each_reader(tmp_path):
    """A weight read by three MatMuls counts three times; an embedding table (Gather) not at all."""
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "w")
    table = numpy_helper.from_array(np.ones((100, 8), np.float32), "table")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["x0"])]
    for i in range(3):
        nodes.append(helper.make_node("MatMul", [f"x{i}", "w"], [f"x{i + 1}"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
                          [helper.make_tensor_value_info("x3", TensorProto.FLOAT, [1, 8])], [w, table])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g), path)
    got = roofline.weight_bytes_per_frame(path)
    assert got == {"read": 3 * 8 * 8 * 4, "stored": (64 + 800) * 4, "tables": 800 * 4}
    assert roofline.floor_ms(got["read"], 1.0) == pytest.approx(768 / 1e9 * 1e3)


def test_bad_requests_are_refused(tmp_path, tiny_dir, monkeypatch):
    with pytest.raises(InputError, match="exactly one --preset"):
        suite.run(["tiny", "marvis-250m"], artifacts=tiny_dir, out_dir=tmp_path)
    with pytest.raises(InputError, match="no manifest.json"):
        suite.run(["tiny"], artifacts=tmp_path / "nowhere", out_dir=tmp_path, browser=False)
    monkeypatch.setattr(suite.machine, "gpu", lambda: None)
    with pytest.raises(InputError, match="no CUDA device"):
        suite.run(["tiny"], device="cuda", artifacts=tiny_dir, out_dir=tmp_path)
    assert not list(tmp_path.glob("*.json"))  # nothing half-written


def test_qwen_rows_draw_the_reference_codes(qwen_dir, tmp_path):
    """A second family through the same bench: qwen-tts-hf's generate, the fused frame graph and the
    step loop (talker + 15 code-predictor steps) give the same greedy codes in one run."""
    assert main(["bench", "--quick", "--dtypes", "fp32", "--artifacts", str(qwen_dir), "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*-quick.json")
    (p,) = json.loads(path.read_text())["presets"]
    rows = {(x["engine"], x["dtype"]): x for x in p["results"]}
    assert set(rows) == {("pytorch", "fp32"), ("fused", "fp32"), ("steps", "fp32")}
    assert all("error" not in row for row in rows.values()), [row.get("error") for row in rows.values()]
    ref = np.array(rows[("pytorch", "fp32")]["codes"])
    assert ref.shape[1] == 16 and len(ref) > 1
    for key in (("fused", "fp32"), ("steps", "fp32")):
        assert np.array_equal(np.array(rows[key]["codes"]), ref), key
    assert rows[("fused", "fp32")]["calls_per_frame"] == 1 and rows[("steps", "fp32")]["calls_per_frame"] == 17
    # streamed with the manifest's codec chunk schedule (a small first chunk, larger ones after)
    schedule = json.loads((qwen_dir / "manifest.json").read_text())["runtime"]["codec_stream"]["chunk_schedule"]
    assert rows[("fused", "fp32")]["streamed"]["chunk_frames"] == schedule and len(schedule) > 1
