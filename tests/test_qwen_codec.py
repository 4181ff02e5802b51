"""Qwen3-TTS's 12 Hz codec as ONNX graphs (tiny random codec, same structure as the released one):
each graph against PyTorch at its check sizes, the streaming decoder against the batch decode over
300 frames (past the 72-frame window), the encoder's codes against the reference's `encode`."""

import importlib.util
import time

import numpy as np
import pytest
import torch

from voxport.exporter.export import export_graph
from voxport.exporter.families.qwen3_tts import codec as qc
from voxport.validation.graphs import check_graph

# the reference package is an optional extra (reference.py imports it with its shims)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("qwen_tts") is None, reason="qwen-tts-hf not installed")

FRAMES = 300


@pytest.fixture(scope="module")
def model():
    return qc.randomize_codec(qc.build_codec(qc.TINY_CODEC))


@pytest.fixture(scope="module")
def graphs(model, tmp_path_factory):
    """name -> (spec, onnxruntime session), each graph exported once by the project's export path."""
    import onnx
    import onnxruntime as ort

    root = tmp_path_factory.mktemp("qwen_codec")
    (root / "onnx").mkdir()
    out = {}
    for spec in qc.codec_graphs(model):
        t = time.time()
        files = export_graph(spec, root)
        nodes = len(onnx.load(str(root / files[0])).graph.node)
        print(f"{spec.name}: exported in {time.time() - t:.1f} s, {nodes} nodes")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # tiny graphs: one thread; more only spin on the shared cores
        out[spec.name] = spec, ort.InferenceSession(str(root / files[0]), opts, providers=["CPUExecutionProvider"])
    return out


def _codes(model, frames, seed=1):
    cfg = model.config.decoder_config
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, frames), generator=gen)


def test_graph_names_and_runtime_entry(model, graphs):
    assert list(graphs) == ["codec_decoder", "codec_decoder_stream", "codec_encoder"]
    entry = qc.codec_stream_runtime(model)
    assert (entry["graph"], entry["sample_rate"], entry["frame_size"]) == ("codec_decoder_stream", 24000, 1920)
    spec = graphs["codec_decoder_stream"][0]
    state_inputs = [s.name for s in spec.inputs[1:]]
    assert [s["input"] for s in entry["state"]] == state_inputs
    assert [s["output"] for s in entry["state"]] == [s.name for s in spec.outputs[1:]]
    assert all(s["input"].startswith("state_in.") and s["output"] == "state_out." + s["input"][9:] for s in entry["state"])


def test_tiny_decoder_is_not_silent(model):
    with torch.no_grad():
        audio = qc.CodecDecode(model)(_codes(model, 20))
    assert torch.isfinite(audio).all()
    assert audio.abs().max() > 0.05 and audio.std() > 0.005, (audio.abs().max(), audio.std())


@pytest.mark.parametrize("name", ["codec_decoder", "codec_decoder_stream", "codec_encoder"])
def test_graph_matches_pytorch(graphs, name):
    spec, session = graphs[name]
    checks = check_graph(spec, session)
    assert checks and all(c.ok for c in checks), [c.describe() for c in checks if not c.ok]


def _stream(session, entry, codes, chunks):
    """What a runtime does with the manifest entry: zeros of each state, then feed back each output."""
    state = {s["input"]: np.zeros((1, *s["shape"]), dtype=s["dtype"]) for s in entry["state"]}
    outs, names, i = [], ["audio_values"] + [s["output"] for s in entry["state"]], 0
    for n in chunks:
        audio, *new = session.run(names, {"audio_codes": codes[..., i:i + n], **state})
        state = {s["input"]: v for s, v in zip(entry["state"], new)}
        outs.append(audio)
        i += n
    assert i == codes.shape[-1]
    return np.concatenate(outs, -1)


def test_stream_equals_batch_decode(model, graphs):
    """300 frames through the streaming graph, one frame at a time and in irregular chunks, against
    the PyTorch batch decode of all 300 (the plain causal forward, see codec.py)."""
    codes = _codes(model, FRAMES)
    with torch.no_grad():
        full = qc.CodecDecode(model)(codes).numpy()
    entry = qc.codec_stream_runtime(model)
    session = graphs["codec_decoder_stream"][1]
    irregular = [1, 2, 7, 3, 64, 1, 90, 5, 127]
    for chunks in ([1] * FRAMES, irregular):
        got = _stream(session, entry, codes.numpy(), chunks)
        assert got.shape == full.shape == (1, 1, FRAMES * 1920)
        rel = np.abs(got - full).max() / np.abs(full).max()
        assert rel <= 1e-4, (len(chunks), rel)


def test_reference_decode_is_full_forward_up_to_one_chunk(model):
    """The reference `decode` runs chunked_decode (300-frame chunks, 25 frames of left context):
    within one chunk it is the plain forward, bit for bit, which the graphs export."""
    codes = _codes(model, 40)
    with torch.no_grad():
        decoded = model.decode(codes.transpose(1, 2)).audio_values[0]
        full = model.decoder(codes)[0, 0]
    assert torch.equal(decoded, full)


def test_encoder_codes_equal_reference_encode(model, graphs):
    spec, session = graphs["codec_encoder"]
    audio = spec.make_inputs({"batch": 1, "samples": 6 * 1920 + 300})[0]
    got = session.run(["audio_codes"], {"input_values": audio.numpy()})[0]
    with torch.no_grad():
        ref = model.encode(audio[:, 0], padding_mask=torch.ones(1, audio.shape[-1], dtype=torch.long)).audio_codes[0]
    assert got.shape == (1, 16, 7)
    np.testing.assert_array_equal(got[0], ref.T.numpy())
    assert len(np.unique(got)) > 10  # randomized codebooks: varied codes, not all zeros
