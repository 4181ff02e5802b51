"""`voxport parity DIR`: reload the PyTorch model named in the manifest and check everything."""

from __future__ import annotations

import gc
import json
import time
from dataclasses import replace
from pathlib import Path

from voxport.exporter import checkpoint
from voxport.runtime.runtime import Runtime
from voxport.validation import report
from voxport.validation.graphs import check_graph, compare_case, reference_cases
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
    return _loaded(ckpt, device), ckpt


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
    rt = Runtime(artifact_dir, providers=onnx_providers(device))
    ckpt = source_checkpoint(manifest, cache_root)
    if checkpoint.family_of(ckpt.path).splits_parity():
        rt.graphs.check(list(manifest["graphs"]))  # before the (large) PyTorch reference is loaded
        graph_rows, rows = _two_phases(rt, ckpt, frames, device, progress)
    else:
        # every graph hash-checked and loaded before the reference: a refused one fails first
        for name in manifest["graphs"]:
            rt.graphs.session(name)
        family = _loaded(ckpt, device)
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


def _loaded(ckpt: checkpoint.Checkpoint, device: str):
    model, family_cls = checkpoint.load(ckpt, device)
    return family_cls(model, ckpt.path)


def _two_phases(rt: Runtime, ckpt, frames: int, device: str, progress) -> tuple[list, list]:
    """The PyTorch side of every check first; then the reference is released and each onnxruntime
    session is loaded alone and released after its checks. orpheus-3b: reference 13.2 GB, its fp32
    frame session 11.5 GB prepacked, 24 GB of memory."""
    family, cases = _loaded(ckpt, device), {}
    for spec in family.graphs():
        progress(f"parity: graph {spec.name}: PyTorch on {len(spec.check_sizes)} shape cases")
        cases[spec.name] = (replace(spec, module=None, build=None, make_inputs=None, export_context=None),
                            list(reference_cases(spec, device)))
    reference = family.parity_reference(rt, ckpt, frames, device, progress)
    compare = type(family).parity_compare
    del family, spec  # the last references to the PyTorch model: phase two never holds it
    gc.collect()
    graph_rows = []
    for name, (spec, refs) in cases.items():
        progress(f"parity: graph {name}: onnxruntime on {len(refs)} shape cases")
        session = rt.graphs.session(name)
        graph_rows += [c for case, feeds, ref in refs for c in compare_case(spec, session, case, feeds, ref)]
        del session
        rt.graphs.release(name)
    cases.clear()
    return graph_rows, compare(rt, reference, frames, progress)
