"""Orpheus on the tiny preset: every graph at shapes other than the trace shapes, greedy codes equal to
transformers' generate with the allowed ids per position, seeded sampling equal to a PyTorch sampler on
the same noise, SNAC against the `snac` package, canopy's windowed decode, fidelity of all five variants."""

import json

import pytest
import torch

from voxport.cli import main
from voxport.errors import CheckpointError


@pytest.fixture(scope="module")
def parity(orpheus_dir):
    assert main(["parity", str(orpheus_dir), "--frames", "50"]) == 0
    return json.loads((orpheus_dir / "parity.json").read_text())


def test_every_graph_matches_pytorch_at_other_shapes(parity):
    assert parity["ok"] and not parity["failures"]
    graphs = {c["graph"] for c in parity["graphs"]}
    assert graphs == {"embed", "frame", "frame_capture", "lm_step", "snac_decoder", "snac_window", "snac_stream"}
    assert all(c["max_abs"] <= c["allowed"] for c in parity["graphs"])
    # codes exact in every frame case (greedy, penalised, top-k, top-p, the stop), long and empty pasts,
    # three rows of different lengths and settings; the static buffers compared up to each row's
    # length + seq + 6 (the LM pass and the six unrolled steps, written in place)
    frame = [c for c in parity["graphs"] if c["graph"] == "frame" and c["output"] == "codes"]
    assert len(frame) == 7 and all(c["max_abs"] == 0 for c in frame)
    assert {p for c in frame for p in c["case"]["past"]} >= {0, 300} and max(c["shape"][0] for c in frame) == 3
    kv = [c for c in parity["graphs"] if c["graph"] == "frame" and c["output"].startswith("present.")]
    assert len(kv) == 7 * 4 and all(c["ok"] for c in kv)
    assert max(c["case"]["frames"] for c in parity["graphs"] if c["graph"] == "snac_decoder") == 40


def test_greedy_equals_constrained_generate_for_50_frames(parity):
    g = parity["greedy"]
    assert g["identical"] and g["frames_reference"] == g["frames_onnx"] == 50
    assert g["agreement_per_frame"] == [1.0] * 50
    assert parity["prompt_ids"]["ok"]
    u = parity["unconstrained"]  # a random LM leaves the audio ids almost at once; reported, not gated
    assert u["tokens"] == 7 * 50 and 0 <= u["outside_allowed"] <= u["tokens"]


def test_seeded_sampling_equals_pytorch_on_the_same_noise(parity):
    s = parity["sampled"]
    assert s["identical"] and s["frames_onnx"] == 24 and s["other_seed_differs"]


def test_snac_decodes_equal_the_package_and_canopys_windows(parity):
    d, w, st = parity["snac_decode"], parity["window_decode"], parity["streamed_decode"]
    assert d["ok"] and d["rel"] <= 1e-4 and d["frames"] == 50
    # canopy decodes once 4 frames exist, then once per frame
    assert w["ok"] and w["worst_rel"] <= 1e-4 and w["windows"] == 50 - 3
    # the stream (2 frames of look-ahead, flushed) gives every frame's audio, near the whole decode
    assert st["samples"][0] == st["samples"][1] == 50 * 2048 and st["snr_db"] >= 20


def test_fidelity_gates_pass_for_all_five_precisions(orpheus_dir):
    from voxport.validation.fidelity import run

    r = run(orpheus_dir, "all", progress=lambda m: None, end_to_end=False)
    assert r["ok"], r["failures"]
    assert r["dtypes"] == ["fp32", "fp16", "q8", "q4", "q4f16"]
    q4 = {x["output"]: x for x in r["summary"] if x["graph"] == "lm_step" and x["dtype"] == "q4"}
    # measured on tiny: the LM's hidden state 37.6 dB in q4, its KV 19.9+ (gate 7)
    assert q4["hidden"]["value"] >= 20 and q4["hidden"]["ok"]
    snac_q4 = r["precision"]["snac_decoder"]["q4"]
    assert snac_q4["dtype"] == "fp32" and "no MatMul" in snac_q4["reason"]  # convolutions only


def test_snac_noise_is_an_input_and_decode_is_not_trivial(cache_root):
    from voxport.exporter.families.orpheus import codec
    from voxport.exporter.presets import materialize

    snac = codec.load(materialize("orpheus-tiny", cache_root))
    codes = torch.randint(0, snac.codebook_size, (1, 7, 5), generator=torch.Generator().manual_seed(0))
    noise = torch.randn(1, 5, sum(codec.noise_per_frame(snac)), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        with codec.given_noise(snac, noise):
            pkg = snac.decode(codec.levels(codes))
        ours = codec.decode(codec.folded(snac), codes, noise)
        other = codec.decode(snac, codes, torch.zeros_like(noise))
    assert pkg.shape == (1, 1, 5 * 2048) and float(pkg.std()) > 1e-2
    assert float((ours - pkg).abs().max() / pkg.abs().max()) <= 1e-5
    assert float((other - pkg).abs().max()) > 1e-3  # the noise changes the audio: it is not ignored


def test_levels_follow_canopys_redistribution():
    from voxport.exporter.families.orpheus.codec import levels

    frame = torch.arange(14).reshape(2, 7).T[None]  # two frames: 0..6, 7..13
    l0, l1, l2 = (x[0].tolist() for x in levels(frame))
    assert l0 == [0, 7] and l1 == [1, 4, 8, 11] and l2 == [2, 3, 5, 6, 9, 10, 12, 13]


def test_a_plain_llama_checkpoint_is_refused_with_one_line(cache_root, tmp_path):
    import shutil

    from voxport.exporter.checkpoint import validate_dir
    from voxport.exporter.presets import materialize

    src = materialize("orpheus-tiny", cache_root)
    bad = tmp_path / "llama"
    shutil.copytree(src, bad)
    shutil.rmtree(bad / "snac")
    with pytest.raises(CheckpointError, match=r"no snac/config.json; put hubertsiuzdak/snac_24khz"):
        validate_dir(bad)
    shutil.copytree(src / "snac", bad / "snac")
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "vocab_size": 500}))
    with pytest.raises(CheckpointError, match=r"vocab_size 500 is smaller than the audio ids"):
        validate_dir(bad)


def test_a_head_size_the_kernels_refuse_gets_the_frame_traced(cache_root, tmp_path):
    """kernels.fusable decides for Orpheus too: at head size 24 (GroupQueryAttention refuses it) the frame
    is FrameStep traced; it passes the export's smoke run and equals FrameStep at every check case, rows
    of different lengths and the static buffers included."""
    import onnxruntime as ort

    from voxport.exporter import checkpoint
    from voxport.exporter.export import export_graph, smallest_feeds, smoke_run
    from voxport.manifest import file_entry
    from voxport.validation.graphs import check_graph

    ref, fam = checkpoint.load(checkpoint.resolve("orpheus-tiny-hd24", cache_root), "cpu")
    spec = next(s for s in fam(ref).graphs() if s.name == "frame")
    assert spec.build is None and ref.lm.config.head_dim == 24
    (tmp_path / "onnx").mkdir()
    files = export_graph(spec, tmp_path)
    smoke_run(tmp_path, {"frame": {"variants": {"fp32": {"files": [file_entry(tmp_path, f) for f in files]}}}},
              {"frame": smallest_feeds(spec)}, lambda m: None)
    rows = check_graph(spec, ort.InferenceSession(str(tmp_path / files[0]), providers=["CPUExecutionProvider"]))
    assert len(rows) == 7 * 6 and all(r.ok for r in rows), [r.describe() for r in rows if not r.ok]


def test_parity_never_holds_the_reference_and_a_session_at_once(orpheus_dir, monkeypatch):
    """Orpheus splits its parity cases, so `voxport parity` runs PyTorch first, releases the model, then
    loads each session alone: what lets orpheus-3b (13.2 GB reference, 11.5 GB fp32 frame session)
    be checked in 24 GB."""
    import weakref

    from voxport.exporter import checkpoint
    from voxport.runtime.graphs import Graphs
    from voxport.validation import harness

    lms, loads = [], []
    real_load, real_session = checkpoint.load, Graphs._session

    def load(ckpt, device="cpu"):
        model, family = real_load(ckpt, device)
        lms.append(weakref.ref(model.lm))
        return model, family

    def session(self, name):
        loads.append((name, all(lm() is None for lm in lms), len(self._sessions)))
        return real_session(self, name)

    monkeypatch.setattr(checkpoint, "load", load)
    monkeypatch.setattr(Graphs, "_session", session)
    r = harness.run(orpheus_dir, frames=8, progress=lambda m: None)
    assert r["ok"] and len(lms) == 1
    graphs = {c["graph"] for c in r["graphs"]}
    assert {n for n, _, _ in loads} >= graphs >= {"embed", "frame", "lm_step", "snac_decoder", "snac_stream"}
    assert all(gone for _, gone, _ in loads), loads  # no session was made while the LM lived
    graph_phase = loads[:len(graphs)]  # one session per graph, each released before the next
    assert all(held == 0 for _, _, held in graph_phase), graph_phase
    assert r["greedy"]["identical"] and r["sampled"]["identical"]
