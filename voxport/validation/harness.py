"""`voxport parity DIR`: reload the PyTorch model named in the manifest and check everything."""

from __future__ import annotations

import json
import time
from pathlib import Path

from voxport.exporter import checkpoint
from voxport.exporter.spec import family_for
from voxport.runtime.csm import CsmRuntime
from voxport.validation import e2e, report, streaming
from voxport.validation.graphs import check_graph
from voxport import manifest as mf
from voxport.errors import ArtifactError


def source_checkpoint(manifest: dict, cache_root: Path | None = None) -> checkpoint.Checkpoint:
    src = manifest["source"]
    ref = {"preset": src.get("name"), "dir": src.get("path"), "hub": src.get("id")}.get(src.get("kind"))
    if not ref:
        raise ArtifactError(f"manifest source {src} names no model to compare against")
    return checkpoint.resolve(ref, cache_root)


def onnx_providers(device: str) -> list[str]:
    """The CUDA provider when the reference runs on a GPU and onnxruntime-gpu (extra `gpu`) is installed."""
    import onnxruntime as ort

    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def run(artifact_dir: Path, device: str = "cpu", frames: int = 50, progress=print,
        cache_root: Path | None = None) -> dict:
    artifact_dir = Path(artifact_dir)
    manifest = mf.load(artifact_dir)
    t0 = time.time()
    # Hash-check and load every graph once, before the (large) PyTorch reference is loaded.
    rt = CsmRuntime(artifact_dir, providers=onnx_providers(device))
    for name in manifest["graphs"]:
        rt.graphs.session(name)
    ckpt = source_checkpoint(manifest, cache_root)
    model, _ = checkpoint.load(ckpt, device)
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(ckpt.path)
    family = family_for(model.config)(model, {})

    graph_rows = []
    for spec in family.graphs():
        progress(f"parity: graph {spec.name} ({len(spec.check_sizes)} shape cases)")
        graph_rows += check_graph(spec, rt.graphs.session(spec.name), device)

    progress(f"parity: greedy generation, {frames} frames, ONNX vs transformers.generate")
    greedy, codes = e2e.greedy_case(rt, model, processor, frames, device)
    progress("parity: waveform, ONNX Mimi decoder vs PyTorch on the generated codes")
    wave = e2e.waveform_case(rt, model, codes, device)
    progress("parity: voice prompt (context utterance through the Mimi encoder graph)")
    voice = e2e.voice_prompt_case(rt, model, processor, max(10, frames // 2), device)
    progress("parity: sampling reproducibility")
    sampling = e2e.sampling_case(rt)
    progress(f"parity: fused frame graph, {frames} greedy frames vs transformers and the step graphs")
    fused = streaming.fused_greedy_case(rt, codes, frames)
    progress("parity: fused frame graph sampling, same noise as PyTorch and the step graphs")
    fused_sampling = streaming.fused_sampling_case(rt, model, family)
    progress("parity: streaming Mimi decode (chunks of 1, 2, 3, 7 frames) vs batch decode")
    stream = streaming.stream_decode_case(rt, model, device=device)
    progress("parity: utterance joins in long text")
    joins = streaming.join_case(rt)

    failures = [c.describe() for c in graph_rows if not c.ok]
    if not greedy["identical"]:
        failures.append(f"greedy generation: codes differ from transformers at frame {greedy['first_mismatch_frame']}"
                        f" ({greedy['frames_onnx']} vs {greedy['frames_reference']} frames)")
    if not wave["ok"]:
        failures.append(f"waveform: relative error {wave['rel']:.3g} > {wave['allowed_rel']}")
    if not voice["identical"]:
        failures.append(f"voice prompt: codes differ from transformers at frame {voice['first_mismatch_frame']}")
    if not (sampling["reproducible"] and sampling["other_seed_differs"]):
        failures.append(f"sampling: not reproducible from the seed ({sampling})")
    if not (fused["identical"] and fused["identical_to_step_graphs"]):
        failures.append(f"fused frame graph: greedy codes differ (from transformers at frame "
                        f"{fused['first_mismatch_frame']}; equal to step graphs: {fused['identical_to_step_graphs']})")
    if not (fused_sampling["fused_equals_torch"] and fused_sampling["fused_equals_step_graphs"]
            and fused_sampling["other_seed_differs"]):
        failures.append(f"fused frame graph sampling with the same noise: {fused_sampling}")
    if not stream["ok"]:
        failures.append(f"streaming decode: relative error {stream['worst_rel']:.3g} > {stream['allowed_rel']}")
    if not joins["ok"]:
        failures.append(f"utterance join: step {joins['join_step_max']} > largest step inside {joins['inside_step_max']}")
    result = {
        "artifact": str(artifact_dir), "source": manifest["source"], "device": device,
        "reference_device": device, "onnx_providers": rt.graphs.providers, "seconds": round(time.time() - t0, 1),
        "ok": not failures, "failures": failures,
        "graphs": [c.__dict__ for c in graph_rows], "greedy": greedy, "waveform": wave,
        "voice_prompt": voice, "sampling": sampling, "fused": fused, "fused_sampling": fused_sampling,
        "stream_decode": stream, "joins": joins,
    }
    (artifact_dir / "parity.json").write_text(json.dumps(result, indent=2))
    report.write(artifact_dir, result)
    return result
