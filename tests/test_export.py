"""Export of the tiny preset: the manifest is complete and describes the files exactly."""

import json

import onnx
import onnxruntime as ort

from voxport.fsutil import sha256_file

GRAPHS = {"embed", "backbone", "depth", "frame", "frame_capture", "mimi_decoder", "mimi_decoder_stream", "mimi_encoder"}


def test_manifest_lists_every_graph_with_hash_and_io(tiny_dir):
    m = json.loads((tiny_dir / "manifest.json").read_text())
    assert set(m["graphs"]) == GRAPHS
    for name, g in m["graphs"].items():
        fp32 = g["variants"]["fp32"]["files"]
        for f in fp32:
            assert sha256_file(tiny_dir / f["path"]) == f["sha256"]
            assert (tiny_dir / f["path"]).stat().st_size == f["bytes"]
        sess = ort.InferenceSession(str(tiny_dir / fp32[0]["path"]))
        # declared names, order and symbolic axes are exactly the file's
        assert [i.name for i in sess.get_inputs()] == [s["name"] for s in g["inputs"]]
        assert [o.name for o in sess.get_outputs()] == [s["name"] for s in g["outputs"]]
        for decl, real in zip(g["inputs"] + g["outputs"], list(sess.get_inputs()) + list(sess.get_outputs())):
            assert list(real.shape) == decl["shape"], (name, decl["name"])
        onnx.checker.check_model(str(tiny_dir / fp32[0]["path"]))


def test_manifest_runtime_facts(tiny_dir):
    m = json.loads((tiny_dir / "manifest.json").read_text())
    rt = m["runtime"]
    assert rt["num_codebooks"] == 32 and rt["codebook_vocab"] == 2051
    assert rt["sample_rate"] == 24000 and rt["frame_size"] == 1920 and rt["frame_rate"] == 12.5
    assert (m["source"]["kind"], m["source"]["name"], m["source"]["seed"]) == ("preset", "tiny", 0)
    assert "<|AUDIO|>" in (tiny_dir / rt["chat_template_file"]).read_text()
    kv = [s["name"] for s in m["graphs"]["backbone"]["inputs"] if s["name"].startswith("past_key_values")]
    assert kv[:2] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert len(kv) == 2 * rt["backbone"]["layers"]


def test_no_partial_directories_left(tiny_dir):
    assert not [p for p in tiny_dir.parent.iterdir() if p.name.startswith(".")]


def test_preset_is_deterministic(tiny_checkpoint, tmp_path):
    from voxport.exporter.families.csm.presets import PRESETS, build_model, build_tokenizer

    a = build_model(PRESETS["tiny"], build_tokenizer(512)).state_dict()
    from transformers import CsmForConditionalGeneration

    b = CsmForConditionalGeneration.from_pretrained(tiny_checkpoint).state_dict()
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)


def test_large_graphs_use_external_data(tiny_checkpoint, tmp_path, monkeypatch):
    """Graphs over the threshold keep weights in <graph>.onnx_data (the 2 GB protobuf limit); the
    file list carries both and onnxruntime loads them to the same result."""
    import numpy as np
    import torch

    import voxport.exporter.export as ex
    from voxport.exporter.checkpoint import Checkpoint, load
    from voxport.exporter.families.csm import CsmFamily

    model, _ = load(Checkpoint(tiny_checkpoint, {}))
    spec = next(g for g in CsmFamily(model, {}).graphs() if g.name == "embed")
    monkeypatch.setattr(ex, "EXTERNAL_DATA_BYTES", 0)
    (tmp_path / "onnx").mkdir()
    files = ex.export_graph(spec, tmp_path)
    assert files == ["onnx/embed.onnx", "onnx/embed.onnx_data"]
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["embed.onnx", "embed.onnx_data"]
    assert (tmp_path / files[1]).stat().st_size > 10 * (tmp_path / files[0]).stat().st_size
    args = spec.make_inputs({"batch": 2, "seq": 7})
    got = ort.InferenceSession(str(tmp_path / files[0])).run(None, {"input_ids": args[0].numpy(),
                                                                    "audio_codes": args[1].numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, spec.module(*args).numpy(), rtol=0, atol=1e-6)


def test_frame_graph_is_fused_with_readable_names(tiny_dir):
    """The frame graph is written with onnxruntime's fused ops: one GroupQueryAttention and two
    SkipSimplifiedLayerNormalization per layer call, packed projections, scoped node names, and no
    sort in greedy decoding (the traced graph: 4,996 nodes on tiny; budget 1,500)."""
    from collections import Counter

    m = json.loads((tiny_dir / "manifest.json").read_text())
    rt = m["runtime"]
    g = onnx.load(str(tiny_dir / "onnx/frame.onnx")).graph
    ops = Counter(n.op_type for n in g.node)
    calls = rt["backbone"]["layers"] + (rt["num_codebooks"] - 1) * rt["depth"]["layers"]
    assert len(g.node) <= 1500, len(g.node)
    assert ops["GroupQueryAttention"] == calls
    assert ops["SkipSimplifiedLayerNormalization"] == 2 * calls + 1 + (rt["num_codebooks"] - 1)  # + final norms
    # per codebook an If: greedy is one ArgMax, sampling a TopK of k (never a full-vocabulary sort)
    branches = {a.name: Counter(n.op_type for n in a.g.node) for n in g.node if n.op_type == "If" for a in n.attribute}
    assert ops["If"] == rt["num_codebooks"] and "TopK" not in ops
    assert branches["else_branch"] == {"ArgMax": 1} and branches["then_branch"]["TopK"] == 1
    names = {n.name for n in g.node}
    assert "/depth/step3/layers.1/attn/qkv/MatMul" in names and "/backbone/layers.0/mlp/gate_up/MatMul" in names
    q4 = onnx.load(str(tiny_dir / "onnx/frame_q4.onnx")).graph
    assert "/depth/step3/layers.1/attn/qkv/MatMulNBits" in {n.name for n in q4.node}
    # the 31 unrolled depth steps share one copy of each depth weight
    assert sum(t.name == "depth.layers.0.attn.qkv.weight" for t in g.initializer) == 1


def test_stream_decoder_runs_its_first_seanet_conv_as_a_matmul(tiny_dir):
    """The batch decoder's first SEANet conv ([out, in, 7]) is a MatMul on a [7 * in, out] weight in the
    streaming decoder (the wasm build's Conv is slow over its 2 steps a frame); every other conv stays."""
    def weights(name, op):
        m = onnx.load(str(tiny_dir / "onnx" / f"{name}.onnx"), load_external_data=False)
        dims = {i.name: list(i.dims) for i in m.graph.initializer}
        return [dims[n.input[1]] for n in m.graph.node if n.op_type == op and n.input[1] in dims]

    batch, stream = weights("mimi_decoder", "Conv"), weights("mimi_decoder_stream", "Conv")
    (first,) = [w for w in batch if w not in stream]
    out_ch, in_ch, k = first
    assert k == 7 and len(stream) == len(batch) - 1
    assert [in_ch * k, out_ch] in weights("mimi_decoder_stream", "MatMul")
