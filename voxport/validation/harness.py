"""`voxport parity DIR`: reload the PyTorch model named in the manifest and check everything."""

from __future__ import annotations

import json
import time
from pathlib import Path

from voxport.exporter import checkpoint
from voxport.runtime.runtime import Runtime
from voxport.validation import report
from voxport.validation.graphs import check_graph
from voxport import manifest as mf
from voxport.errors import ArtifactError


def source_checkpoint(manifest: dict, cache_root: Path | None = None) -> checkpoint.Checkpoint:
    src = manifest["source"]
    ref = {"preset": src.get("name"), "dir": src.get("path"), "hub": src.get("id")}.get(src.get("kind"))
    if not ref:
        raise ArtifactError(f"manifest source {src} names no model to compare against")
    return checkpoint.resolve(ref, cache_root, src.get("parts"))


def reference_family(manifest: dict, cache_root: Path | None, device: str):
    """The family of the manifest's source checkpoint, holding its reference model; and the checkpoint."""
    ckpt = source_checkpoint(manifest, cache_root)
    model, family_cls = checkpoint.load(ckpt, device)
    return family_cls(model, ckpt.path), ckpt


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
    rt = Runtime(artifact_dir, providers=onnx_providers(device))
    for name in manifest["graphs"]:
        rt.graphs.session(name)
    family, ckpt = reference_family(manifest, cache_root, device)

    graph_rows = []
    for spec in family.graphs():
        progress(f"parity: graph {spec.name} ({len(spec.check_sizes)} shape cases)")
        graph_rows += check_graph(spec, rt.graphs.session(spec.name), device)
    rows = family.parity(rt, ckpt, frames, device, progress)
    failures = [c.describe() for c in graph_rows if not c.ok] + [r.as_json()["failure"] for r in rows if not r.ok]
    result = {
        "artifact": str(artifact_dir), "source": manifest["source"], "device": device,
        "reference_device": device, "onnx_providers": rt.graphs.providers, "seconds": round(time.time() - t0, 1),
        "ok": not failures, "failures": failures,
        "graphs": [c.__dict__ for c in graph_rows], "rows": [r.as_json() for r in rows],
        **{r.name: r.details for r in rows},  # each case's numbers under its name
    }
    (artifact_dir / "parity.json").write_text(json.dumps(result, indent=2))
    report.write(artifact_dir, result)
    return result
