"""Precision variants of the tiny preset: names, sizes, mixed precision as declared, and fidelity gates
(SNR of every output of every graph against fp32 PyTorch) passing with the figures to prove it."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from voxport.exporter.families.csm.precision import CSM_PRECISION
from voxport.exporter.precision import SNR_MIN_DB, GraphPrecision, snr_threshold
from voxport.runtime.runtime import Runtime
from voxport import manifest as mf
from voxport.cli import main

DTYPES = ["fp32", "fp16", "q8", "q4", "q4f16"]
SUFFIX = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "q4": "_q4", "q4f16": "_q4f16"}


@pytest.fixture(scope="module")
def fidelity(tiny_dir):
    from voxport.validation.fidelity import run

    return run(tiny_dir, "all", frames=8, progress=lambda m: None)


def test_variants_follow_the_transformers_js_names(tiny_dir):
    m = mf.load(tiny_dir)
    assert m["dtypes"] == DTYPES
    for name, g in m["graphs"].items():
        assert list(g["variants"]) == DTYPES
        for d, v in g["variants"].items():
            p = v["precision"]
            if "reason" in p:  # declared unable to take it: the fp32 file, and why
                assert name == "mimi_encoder" and v["files"] == g["variants"]["fp32"]["files"]
                assert p["dtype"] == "fp32" and "codes" in p["reason"]
            else:
                assert v["files"][0]["path"] == f"onnx/{name}{SUFFIX[d]}.onnx" and p["dtype"] == d


def test_sizes_shrink_with_precision(tiny_dir):
    m = mf.load(tiny_dir)
    size = {d: mf.variant_bytes(m, d) for d in DTYPES}
    assert size["fp32"] > 1.6 * size["fp16"] and size["fp16"] > size["q4"] > size["q4f16"]
    assert size["fp16"] > size["q8"] > size["q4f16"]
    # embedding tables are int8 in q8 and q4 (Gather + DequantizeLinear): embed shrinks ~4x in both;
    # depth's [31, Hd, V] codebook heads are a table there too
    b = {(g, d): m["graphs"][g]["variants"][d]["files"][0]["bytes"] for g in ("embed", "depth") for d in DTYPES}
    assert b[("embed", "q4")] < b[("embed", "fp32")] / 3.5 and b[("embed", "q8")] < b[("embed", "fp32")] / 3.5
    assert b[("depth", "q4")] < b[("depth", "fp32")] / 3 and b[("depth", "q8")] < b[("depth", "fp32")] / 3


def test_mixed_precision_follows_the_policy(tiny_dir):
    """fp16 Mimi decoder keeps its transformer fp32 (its MatMuls read fp32 weights); I/O stay as declared."""
    model = onnx.load(str(tiny_dir / "onnx/mimi_decoder_fp16.onnx"))
    init = {t.name: t.data_type for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def weight_type(name):  # through the Casts the converter puts at the fp32 island's border
        while name not in init and name in producer and producer[name].op_type == "Cast":
            name = producer[name].input[0]
        return init.get(name)

    matmul_w = [weight_type(n.input[1]) for n in model.graph.node if n.op_type == "MatMul"]
    assert len(matmul_w) >= 8 and set(matmul_w) - {None} == {onnx.TensorProto.FLOAT}
    conv_w = [init[n.input[1]] for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert conv_w and set(conv_w) == {onnx.TensorProto.FLOAT16}  # the rest of the codec is fp16
    q4 = onnx.load(str(tiny_dir / "onnx/depth_q4.onnx"))
    ops = {n.op_type for n in q4.graph.node}
    consts = {t.name for t in q4.graph.initializer}
    assert {"MatMulNBits", "DequantizeLinear"} <= ops and "GatherBlockQuantized" not in ops  # wasm has none
    tables = [n.input[0] for n in q4.graph.node if n.op_type == "Gather" and n.input[0] in consts]
    assert tables and all(t.endswith("_quantized") for t in tables)  # every table int8, heads included
    assert not [n for n in q4.graph.node if n.op_type == "MatMul" and n.input[1] in consts]  # no fp32 weight left
    for d in ("fp16", "q4f16"):  # keep_io_types: KV caches and hidden states stay float32 at the border
        sess = ort.InferenceSession(str(tiny_dir / f"onnx/backbone{SUFFIX[d]}.onnx"))
        assert {i.type for i in sess.get_inputs() + sess.get_outputs()} == {"tensor(float)", "tensor(int64)"}


def test_undeclared_graph_gets_the_default_policy(tiny_checkpoint):
    from voxport.exporter.checkpoint import Checkpoint, load
    from voxport.exporter.families.csm import CsmFamily

    fam = CsmFamily(load(Checkpoint(tiny_checkpoint, {}))[0], {})
    assert fam.precision_policy("a_graph_added_later") == GraphPrecision()
    assert fam.precision_policy("depth").quantize_embeddings


def test_fidelity_gates_pass_with_margin(fidelity, tiny_dir):
    assert fidelity["ok"], fidelity["failures"]
    rows = fidelity["summary"]
    graphs = {"embed", "backbone", "depth", "frame", "frame_capture", "mimi_decoder", "mimi_decoder_stream",
              "mimi_encoder"}
    assert {(r["graph"], r["dtype"]) for r in rows} == {(g, d) for g in graphs for d in DTYPES}
    # the frame graph's sampled outputs (codes, next_embeds) are gated in fp32 only: one flipped argmax
    # on random near-flat logits changes them wholesale
    sampled = [r for r in rows if r["graph"] == "frame" and r["output"] in ("codes", "next_embeds")]
    assert all((r["threshold"] is None) == (r["dtype"] != "fp32") for r in sampled)
    assert all(r["value"] >= 110 for r in sampled if r["dtype"] == "fp32" and r["metric"] == "snr_db")
    snr = {(r["graph"], r["output"], r["dtype"]): r["value"] for r in rows
           if r["metric"] == "snr_db" and r["threshold"] is not None}
    # measured on tiny (fidelity.md): fp32 >= 120 dB, fp16 >= 55, q8 >= 16, q4 >= 12
    assert min(v for (g, o, d), v in snr.items() if d == "fp32") > 110
    assert min(v for (g, o, d), v in snr.items() if d == "fp16") > SNR_MIN_DB["fp16"]
    # each gate as the product applies it (the depth graph's q8 gate is lower, by design: precision.py)
    assert all(v >= snr_threshold(CSM_PRECISION.get(g, GraphPrecision()), d) for (g, o, d), v in snr.items())
    # fp16 near-lossless, and each coarser precision loses more on the transformer graphs
    for g, o in (("backbone", "logits"), ("depth", "logits")):
        assert snr[(g, o, "fp32")] > snr[(g, o, "fp16")] > snr[(g, o, "q8")] > snr[(g, o, "q4")], (g, o)
    # embed is all tables: int8 in q8 and q4 alike, so the same file content and the same SNR
    e = [snr[("embed", "inputs_embeds", d)] for d in ("fp32", "fp16", "q8", "q4")]
    assert e[0] > e[1] > e[2] and e[3] == pytest.approx(e[2], abs=0.01)
    codes = [r for r in rows if r["graph"] == "mimi_encoder"]
    assert all(r["metric"] == "agreement" and r["value"] == 1.0 for r in codes)  # kept fp32: exact


def test_fidelity_report_shows_figures_beside_gates(fidelity, tiny_dir):
    md = (tiny_dir / "fidelity.md").read_text()
    q4 = next(r for r in fidelity["summary"] if (r["graph"], r["output"], r["dtype"]) == ("backbone", "logits", "q4"))
    assert f"| backbone | logits | q4 | snr_db | {q4['value']:.4g} | >= {SNR_MIN_DB['q4']} | yes |" in md
    assert "reported, not gated" in md
    assert (tiny_dir / "fidelity.png").stat().st_size > 10_000
    saved = json.loads((tiny_dir / "fidelity.json").read_text())
    assert saved["sizes"]["q4"] < saved["sizes"]["fp32"]
    a = fidelity["agreement"]
    assert a["fp32"]["mean"] == 1.0 and a["fp32"]["frames_before_first_difference"] == [8, 8, 8]
    assert len(a["q4"]["per_codebook"]) == 32 and 0.0 <= a["q4"]["mean"] <= 1.0


def test_every_variant_speaks(tiny_dir, tmp_path, capsys):
    for d in DTYPES:
        res = Runtime(tiny_dir, dtype=d).generate("Hello there.", max_frames=3)
        assert res.codes.shape == (3, 32) and np.abs(res.audio).max() > 1e-4, d
    assert main(["speak", str(tiny_dir), "Hi.", "-o", str(tmp_path / "q4.wav"), "--dtype", "q4",
                 "--greedy", "--max-frames", "3"]) == 0
    assert (tmp_path / "q4.wav").stat().st_size > 3 * 1920 * 2


def test_large_variants_use_onnx_data(tiny_dir, tmp_path, monkeypatch):
    import voxport.exporter.quantize as q

    monkeypatch.setattr(q, "EXTERNAL_DATA_BYTES", 0)

    files, p = q.make_variant(tiny_dir / "onnx/depth.onnx", tmp_path / "depth_q4.onnx", "q4", CSM_PRECISION["depth"])
    assert [f.name for f in files] == ["depth_q4.onnx", "depth_q4.onnx_data"] and p["dtype"] == "q4"
    onnx.checker.check_model(str(files[0]))
    ids, h = np.array([[5, 9]]), np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    feeds = {"input_ids": ids, "backbone_last_hidden_state": h}
    sess = ort.InferenceSession(str(files[0]))
    feeds.update({i.name: np.zeros([1, i.shape[1], 0, i.shape[3]], np.float32) for i in sess.get_inputs()[2:]})
    ref = ort.InferenceSession(str(tiny_dir / "onnx/depth_q4.onnx")).run(None, feeds)[0]
    np.testing.assert_array_equal(sess.run(None, feeds)[0], ref)


def _one_matmul(k: int = 96, n: int = 80) -> tuple[onnx.ModelProto, np.ndarray]:
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) * 0.05
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="/layer/proj/MatMul")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", "seq", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "seq", n])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model, w


def test_q8_for_a_batched_graph_quantizes_each_row_by_itself():
    """quantize_q8_rows: a row's output in a call of 5 rows is bitwise its output alone, within 35 dB of
    fp32 (rows of scales 0.1-8 apart, each with its own activation scale; per-column weight scales);
    onnxruntime's dynamic quantization of the same graph takes one scale for the call, so its rows differ."""
    from voxport.exporter.quantize import quantize_q8, quantize_q8_rows

    x = np.random.default_rng(1).standard_normal((5, 2, 96)).astype(np.float32)
    x *= np.array([0.1, 1, 8, 0.5, 3], np.float32)[:, None, None]
    rows, n = quantize_q8_rows(_one_matmul()[0], GraphPrecision())
    assert n == 1 and [node.op_type for node in rows.graph.node].count("MatMulInteger") == 1
    dynamic, _ = quantize_q8(_one_matmul()[0], GraphPrecision())
    ref = x @ _one_matmul()[1]
    for model, exact in ((rows, True), (dynamic, False)):
        s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        batch = s.run(None, {"x": x})[0]
        alone = np.concatenate([s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
        assert np.array_equal(batch, alone) == exact
        if exact:
            snr = 10 * np.log10((ref ** 2).sum() / ((ref - batch) ** 2).sum())
            assert snr > 35, snr
