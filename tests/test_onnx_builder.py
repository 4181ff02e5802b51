"""The graph builder's external-data streaming and the q4 pass that reads weights from the file."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from voxport.exporter.onnx_builder import ALIGN, ExternalData, GraphBuilder
from voxport.exporter.precision import GraphPrecision
from voxport.exporter.quantize import make_variant, save

W = [np.random.default_rng(i).standard_normal((256, 256)).astype(np.float32) for i in range(3)]  # 256 KiB each


def _build(weights=W) -> onnx.ModelProto:
    b = GraphBuilder("mlp")
    x = b.input("x", "float32", ("batch", 256))
    for i, w in enumerate(weights):
        x = b.op("MatMul", [x, b.weight(f"w{i}", w)], label=f"fc{i}")
        x = b.op("Add", [x, b.const([0.5] * 4 + [0.0] * 252, np.float32)], label=f"fc{i}")  # 1 KiB: spilled too
    x = b.op("Mul", [x, b.const(2.0, np.float32)])  # a scalar: stays inline
    b.output(x, "y", "float32", ("batch", 256))
    return b.model()


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_initializers_stream_to_external_data_past_the_limit(tmp_path):
    plain = _build()
    with ExternalData(over=1 << 20).graph(tmp_path / "under.onnx_data"):
        under = _build()
    assert under.SerializeToString() == plain.SerializeToString()  # under the limit: the same bytes
    assert not (tmp_path / "under.onnx_data").exists()

    data = tmp_path / "g.onnx_data"
    spilled = ExternalData(over=300_000)
    with spilled.graph(data):  # the second weight passes it: the first spills with it
        model = _build()
    assert spilled.used == [data]
    stored = {t.name: t for t in model.graph.initializer}
    external = {n for n, t in stored.items() if t.data_location == onnx.TensorProto.EXTERNAL}
    assert {"w0", "w1", "w2"} <= external and not any(len(stored[n].raw_data) for n in external)
    assert len(external) == 4 and "const_float32_s_2p0" not in external  # 3 weights + the 1 KiB bias
    offsets = [int(e.value) for n in external for e in stored[n].external_data if e.key == "offset"]
    assert all(o % ALIGN == 0 for o in offsets) and len(set(offsets)) == 4
    files = save(model, tmp_path / "g.onnx")
    assert files == [tmp_path / "g.onnx"] and data.stat().st_size >= 3 * W[0].nbytes
    save(plain, tmp_path / "plain.onnx")
    x = np.random.default_rng(7).standard_normal((3, 256)).astype(np.float32)
    np.testing.assert_array_equal(_run(tmp_path / "g.onnx", x), _run(tmp_path / "plain.onnx", x))


@pytest.mark.parametrize("dtype", ["q4", "q8"])
def test_variants_from_external_data_equal_those_from_inline_weights(tmp_path, dtype):
    """q4 maps each weight from the data file while packing it; the graph and weights it writes equal
    those made from the same graph with its weights inline (the file differs only in each loaded
    tensor's explicit data_location DEFAULT)."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    with ExternalData(over=0).graph(tmp_path / "a" / "g.onnx_data"):
        model = _build()
    save(model, tmp_path / "a" / "g.onnx")
    save(_build(), tmp_path / "b" / "g.onnx")
    x = np.random.default_rng(3).standard_normal((2, 256)).astype(np.float32)
    outs = []
    for d in ("a", "b"):
        files, precision = make_variant(tmp_path / d / "g.onnx", tmp_path / d / f"g_{dtype}.onnx", dtype,
                                        GraphPrecision())
        assert precision["dtype"] == dtype and precision["quantized_nodes"] == 3
        outs.append(_run(files[0], x))
    np.testing.assert_array_equal(*outs)
    if dtype == "q4":
        a, b = (onnx.load(str(tmp_path / d / "g_q4.onnx")) for d in ("a", "b"))
        assert [n.SerializeToString() for n in a.graph.node] == [n.SerializeToString() for n in b.graph.node]
        assert [(t.name, t.raw_data) for t in a.graph.initializer] == [(t.name, t.raw_data) for t in b.graph.initializer]
        assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in a.graph.initializer)


def test_a_later_graph_points_at_the_weights_an_earlier_one_wrote(tmp_path):
    """Two graphs of one export with weights in common: the second writes only what is new (w2 changed)
    and reads the rest from the first's file; both run as their inline twins."""
    spilled = ExternalData(over=0)
    other = [W[0], W[1], W[2] + 1.0]
    with spilled.graph(tmp_path / "first.onnx_data"):
        first = _build()
    with spilled.graph(tmp_path / "second.onnx_data"):
        second = _build(other)
    assert spilled.used == [tmp_path / "first.onnx_data", tmp_path / "second.onnx_data"]
    located = {t.name: {e.key: e.value for e in t.external_data} for t in second.graph.initializer
               if t.data_location == onnx.TensorProto.EXTERNAL}
    assert located["w0"]["location"] == located["w1"]["location"] == "first.onnx_data"
    assert located["w2"]["location"] == "second.onnx_data"
    assert (tmp_path / "second.onnx_data").stat().st_size == W[2].nbytes  # w2 alone, at offset 0
    for model, name, weights in ((first, "first", W), (second, "second", other)):
        save(model, tmp_path / f"{name}.onnx")
        save(_build(weights), tmp_path / f"{name}_inline.onnx")
        x = np.random.default_rng(5).standard_normal((2, 256)).astype(np.float32)
        np.testing.assert_array_equal(_run(tmp_path / f"{name}.onnx", x), _run(tmp_path / f"{name}_inline.onnx", x))


def test_q4_packs_a_weight_read_by_several_matmuls_once(tmp_path):
    """One weight read by three MatMuls (unrolled steps) is packed once and the three MatMulNBits nodes
    read the same tables; outputs equal those of three separately packed copies."""
    def build(shared: bool):
        b = GraphBuilder("steps")
        x = b.input("x", "float32", ("batch", 256))
        for i in range(3):
            x = b.op("MatMul", [x, b.weight("w" if shared else f"w{i}", W[0])], label=f"step{i}")
        b.output(x, "y", "float32", ("batch", 256))
        return b.model()

    x = np.random.default_rng(9).standard_normal((2, 256)).astype(np.float32)
    outs = []
    for shared in (True, False):
        d = tmp_path / str(shared)
        d.mkdir()
        save(build(shared), d / "g.onnx")
        files, precision = make_variant(d / "g.onnx", d / "g_q4.onnx", "q4", GraphPrecision())
        q = onnx.load(str(files[0]))
        assert [n.op_type for n in q.graph.node] == ["MatMulNBits"] * 3 and precision["quantized_nodes"] == 3
        assert len(q.graph.initializer) == (2 if shared else 6)  # packed weights + scales
        outs.append(_run(files[0], x))
    np.testing.assert_array_equal(*outs)
