"""The parity harness on the tiny preset: every graph in tolerance, identical greedy codes."""

import json

from voxport.cli import main


def test_parity_passes_and_writes_reports(tiny_dir, capsys):
    assert main(["parity", str(tiny_dir), "--frames", "50"]) == 0
    r = json.loads((tiny_dir / "parity.json").read_text())
    assert r["ok"] and not r["failures"]
    assert r["greedy"]["identical"] and r["greedy"]["frames_reference"] == 50
    assert r["greedy"]["agreement_per_frame"] == [1.0] * 50
    assert r["voice_prompt"]["identical"] and r["voice_prompt"]["context_frames"] > 0
    assert r["sampling"]["reproducible"] and r["sampling"]["other_seed_differs"]
    assert r["waveform"]["rel"] <= 1e-4 and r["waveform"]["samples"] == 50 * 1920
    # every graph checked at several shapes, including an empty and a long past
    cases = {(c["graph"], tuple(sorted((k, str(v)) for k, v in c["case"].items()))) for c in r["graphs"]}
    assert {g for g, _ in cases} == {"embed", "backbone", "depth", "frame", "frame_capture", "mimi_decoder",
                                     "mimi_decoder_stream", "mimi_encoder"}
    assert any(g == "backbone" and dict(c)["past"] == "0" for g, c in cases)
    assert any(g == "backbone" and int(dict(c)["past"]) >= 300 for g, c in cases)
    # the frame graph's static cache: rows of different lengths in one call
    assert any(g == "frame" and dict(c)["past"] == "[5, 17, 40]" for g, c in cases)
    assert all(c["max_abs"] <= c["allowed"] for c in r["graphs"])
    # the fused frame graph: 50 greedy frames as transformers and the step graphs; sampling as PyTorch
    assert r["fused"]["identical"] and r["fused"]["identical_to_step_graphs"] and r["fused"]["frames_onnx"] == 50
    fs = r["fused_sampling"]
    assert fs["fused_equals_torch"] and fs["fused_equals_step_graphs"] and fs["other_seed_differs"]
    # streaming decode equals the batch decode across the 250-step window, in every chunk size
    sd = r["stream_decode"]
    assert sd["frames"] >= 300 and set(sd["chunks"]) == {"1", "2", "3", "7"}
    assert all(c["rel"] <= 1e-4 for c in sd["chunks"].values()) and sd["ok"]
    assert sd["chunks"]["7"]["calls"] == -(-sd["frames"] // 7)
    # no click at utterance joins: the step across a join is no larger than inside an utterance
    j = r["joins"]
    assert j["joins"] >= 1 and j["join_step_max"] <= j["inside_step_max"] and j["ok"]
    assert (tiny_dir / "parity.md").read_text().count("| yes |") == len(r["graphs"])
    assert (tiny_dir / "parity.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "parity PASS" in out
    # the family's cases come back as rows the CLI and report print without knowing their names
    names = [row["name"] for row in r["rows"]]
    assert names == ["greedy", "waveform", "voice_prompt", "sampling", "fused", "fused_sampling", "stream_decode",
                     "joins"] and all(row["ok"] for row in r["rows"])
    assert all(f"ok   {n}: " in out for n in names) and f"{len(names)}/{len(names)} end-to-end cases pass" in out
    assert "identical to transformers.generate over 50 frames" in (tiny_dir / "parity.md").read_text()


def test_parity_names_the_graph_that_fails(tiny_dir, tmp_path):
    """A graph that computes something else must fail with graph, output, shape and distance."""
    import torch
    import onnxruntime as ort

    from voxport.exporter.checkpoint import load, resolve
    from voxport.exporter.families import family_for
    from voxport.validation.graphs import check_graph

    model, _ = load(resolve("tiny"))
    spec = next(g for g in family_for({"model_type": "csm"})(model, {}).graphs() if g.name == "backbone")
    with torch.no_grad():
        model.lm_head.weight.mul_(1.01)  # the reference drifts 1% away from the exported graph
    sess = ort.InferenceSession(str(tiny_dir / "onnx" / "backbone.onnx"))
    checks = check_graph(spec, sess)
    bad = [c for c in checks if not c.ok]
    assert bad and {c.output for c in bad} == {"logits"}
    msg = bad[0].describe()
    assert "backbone.logits" in msg and "shape" in msg and "max |diff|" in msg
