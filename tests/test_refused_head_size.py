"""Checkpoints whose head size onnxruntime's GroupQueryAttention refuses (24: a multiple of 8, not of
16; exporter/kernels.py) get the frame graph traced instead of written: it exports, passes the
export's smoke run and equals FrameStep at every check case (Orpheus: the same test in
tests/test_orpheus.py).

CSM's traced frame (31 unrolled depth steps, ~5,000 nodes) costs ~2 min of CPU to export, nearly all
of it in torch.export's trace and its decomposition retrace; Qwen3-TTS's (15 code-predictor steps)
~1 min."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("preset,cases", [("tiny-hd24", 6), ("qwen3-tts-tiny-hd24", 7)])
def test_the_traced_frame_exports_runs_and_passes_parity(preset, cases, cache_root, tmp_path):
    import onnxruntime as ort

    from voxport.exporter import checkpoint
    from voxport.exporter.export import export_graph, smallest_feeds, smoke_run
    from voxport.manifest import file_entry
    from voxport.validation.graphs import check_graph

    ref, fam = checkpoint.load(checkpoint.resolve(preset, cache_root), "cpu")
    spec = next(s for s in fam(ref).graphs() if s.name == "frame")
    assert spec.build is None  # traced, not written
    (tmp_path / "onnx").mkdir()
    files = export_graph(spec, tmp_path)
    smoke_run(tmp_path, {"frame": {"variants": {"fp32": {"files": [file_entry(tmp_path, f) for f in files]}}}},
              {"frame": smallest_feeds(spec)}, lambda m: None)
    rows = check_graph(spec, ort.InferenceSession(str(tmp_path / files[0]), providers=["CPUExecutionProvider"]))
    assert len(spec.check_sizes) == cases and len(rows) == len(spec.outputs) * cases
    assert all(r.ok for r in rows), [r.describe() for r in rows if not r.ok]
