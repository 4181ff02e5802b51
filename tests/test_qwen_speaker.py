"""Qwen3-TTS Base speaker encoder graph (24 kHz waveform -> x-vector, log-mel inside) against the
reference's extract_speaker_embedding, and its log-mel front end against the reference's mel_spectrogram."""

from __future__ import annotations

import numpy as np
import pytest

from voxport.exporter.families.qwen3_tts.reference import reference
from voxport.exporter.presets import materialize

# 2.3 s, 1 s, 0.7 s + 1 (odd), not a whole number of hops, the shortest input the encoder takes
LENGTHS = [55200, 24000, 16801, 7777, 1280]
# x-vector: ONNX vs extract_speaker_embedding (torch.stft front end), relative to max |x-vector|;
# tiny preset measured 3.9e-7 (released dimensions, random weights, ONNX vs torch: 9.1e-7)
XVEC_RTOL = 1e-5
# log-mel (natural log of mel power, values about -7..1): the Conv1d DFT sums 1024 fp32 products
# where torch.stft runs an FFT; measured 1.6e-4 torch, the same order in onnxruntime (torch.stft's own
# distance from a float64 computation: 3.2e-5)
LOG_MEL_ATOL = 5e-4


@pytest.fixture(scope="module")
def base(cache_root):
    from voxport.exporter.families.qwen3_tts import presets

    return presets.load(materialize("qwen3-tts-tiny-base", cache_root))


def _session(path, quiet=False):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if quiet:  # an expected failure: no error lines on stderr
        opts.log_severity_level = 4
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(base, tmp_path_factory):
    from voxport.exporter.export import export_graph
    from voxport.exporter.families.qwen3_tts import Qwen3TtsFamily

    root = tmp_path_factory.mktemp("qwen-spk")
    (root / "onnx").mkdir()
    spec = next(s for s in Qwen3TtsFamily(base).graphs() if s.name == "speaker_encoder")
    return spec, root / export_graph(spec, root)[0]


def test_graph_io_and_check_sizes(exported):
    from voxport.validation.graphs import check_graph

    spec, path = exported
    sess = _session(path)
    assert [(i.name, i.shape) for i in sess.get_inputs()] == [("input_values", [1, "samples"])]
    assert [(o.name, o.shape) for o in sess.get_outputs()] == [("speaker_embedding", [1, 64])]
    checks = check_graph(spec, sess)
    assert checks and all(c.ok for c in checks), [c.describe() for c in checks if not c.ok]


@pytest.mark.parametrize("samples", LENGTHS)
def test_onnx_x_vector_equals_reference_extract(base, exported, samples):
    from voxport.exporter.families.qwen3_tts.graphs import voice_like

    wav = voice_like(samples, seed=samples)[0].numpy()
    ref = base.extract_speaker_embedding(wav, 24000).numpy()  # [D]
    got = _session(exported[1]).run(None, {"input_values": wav[None]})[0]
    assert got.shape == (1, ref.shape[0])
    err = np.abs(got[0] - ref).max()
    assert err <= XVEC_RTOL * np.abs(ref).max(), f"{samples} samples: max |diff| {err:.3g}"


def test_shorter_than_min_samples_fails_in_both(base, exported):
    """Below runtime speaker_encoder.min_samples the reference's reflect paddings refuse the input; so does the graph."""
    from voxport.exporter.families.qwen3_tts.graphs import voice_like

    wav = voice_like(1279)
    with pytest.raises(RuntimeError, match="[Pp]adding"):
        base.extract_speaker_embedding(wav[0].numpy(), 24000)
    with pytest.raises(Exception, match="Pad"):
        _session(exported[1], quiet=True).run(None, {"input_values": wav.numpy()})

def test_log_mel_equals_reference_mel_spectrogram(tmp_path):
    """The front end alone (where the graph departs from the reference's arithmetic), torch and onnxruntime."""
    import torch

    from voxport.exporter.export import export_graph
    from voxport.exporter.families.qwen3_tts.graphs import voice_like
    from voxport.exporter.families.qwen3_tts.speaker import LogMel
    from voxport.exporter.spec import GraphSpec, TensorSpec

    with reference() as qt:
        mel_spectrogram = qt.models.modeling_qwen3_tts.mel_spectrogram
    spec = GraphSpec("log_mel", LogMel(), [TensorSpec("input_values", "float32", (1, "samples"))],
                     [TensorSpec("log_mel", "float32", (1, "frames", 128))],
                     make_inputs=lambda s: [voice_like(s["samples"])], export_sizes={"samples": 24000}, check_sizes=[])
    (tmp_path / "onnx").mkdir()
    sess = _session(tmp_path / export_graph(spec, tmp_path)[0])
    for samples in LENGTHS:
        wav = voice_like(samples, seed=samples)
        # exactly extract_speaker_embedding's call
        ref = mel_spectrogram(wav, n_fft=1024, num_mels=128, sampling_rate=24000, hop_size=256, win_size=1024,
                              fmin=0, fmax=12000).transpose(1, 2).numpy()
        assert ref.shape == (1, samples // 256, 128)
        with torch.no_grad():
            ours = spec.module(wav).numpy()
        got = sess.run(None, {"input_values": wav.numpy()})[0]
        for name, x in (("torch", ours), ("onnxruntime", got)):
            assert x.shape == ref.shape
            err = np.abs(x - ref).max()
            assert err <= LOG_MEL_ATOL, f"{name}, {samples} samples: max |diff| {err:.3g}"


def test_only_base_has_a_speaker_encoder(base, cache_root):
    from voxport.exporter.families.qwen3_tts import Qwen3TtsFamily, presets

    custom = presets.load(materialize("qwen3-tts-tiny", cache_root))
    family = Qwen3TtsFamily(custom)
    assert "speaker_encoder" not in [s.name for s in family.graphs()]
    assert "speaker_encoder" not in family.runtime_config()["generation"]["codec"]
    codec = Qwen3TtsFamily(base).runtime_config()["generation"]["codec"]
    assert codec["speaker_encoder"] == "speaker_encoder" and codec["speaker_encoder_min_samples"] == 1280


def test_precision_variants(base, exported, tmp_path):
    """fp16 keeps the x-vector (cosine >= 0.9999 vs fp32); q8 / q4 / q4f16 reuse the fp32 file, with the reason."""
    from voxport.exporter.families.qwen3_tts import Qwen3TtsFamily
    from voxport.exporter.families.qwen3_tts.graphs import voice_like
    from voxport.exporter.quantize import make_variant

    policy = Qwen3TtsFamily(base).precision_policy("speaker_encoder")
    for dtype in ("q8", "q4", "q4f16"):
        files, info = make_variant(exported[1], tmp_path / f"{dtype}.onnx", dtype, policy)
        assert files == [] and info["dtype"] == "fp32" and "filterbank" in info["reason"]
    files, info = make_variant(exported[1], tmp_path / "fp16.onnx", "fp16", policy)
    assert info["dtype"] == "fp16"
    fp32, fp16 = _session(exported[1]), _session(files[0])
    for samples in (55200, 7777):
        feeds = {"input_values": voice_like(samples, seed=samples).numpy()}
        a, b = fp32.run(None, feeds)[0][0], fp16.run(None, feeds)[0][0]
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= 0.9999
