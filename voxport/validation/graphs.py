"""Per-graph parity: PyTorch module vs onnxruntime on shapes that differ from the export shapes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxport.exporter.spec import GraphSpec
from voxport.runtime.kv import run_bound


@dataclass
class OutputCheck:
    graph: str
    case: dict
    output: str
    shape: list
    max_abs: float
    scale: float  # max |torch output|
    rel: float  # max_abs / scale
    allowed: float  # atol + rtol * scale (0 for exact)
    ok: bool

    def describe(self) -> str:
        return (f"{self.graph}.{self.output} at {self.case} shape {self.shape}: max |diff| {self.max_abs:.3g} "
                f"(relative {self.rel:.3g}), allowed {self.allowed:.3g}")


def reference_cases(spec: GraphSpec, device: str = "cpu"):
    """Per check case: (case, onnxruntime feeds, PyTorch outputs as numpy), in output order."""
    import torch

    for case in spec.check_sizes:
        args = spec.make_inputs(case)
        with torch.no_grad():
            ref = spec.module(*[a.to(device) for a in args])
        ref = [r.detach().cpu().numpy() for r in ((ref,) if isinstance(ref, torch.Tensor) else ref)]
        feeds = {s.name: a.numpy() for s, a in zip(spec.inputs, args)}
        yield case, feeds, settle(spec, feeds, ref)


def run_graph(spec: GraphSpec, session, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """All the spec's outputs, in order; outputs the graph writes in place (spec.inplace) run bound to
    a copy of their input's buffer, as a runtime binds them (the feeds stay as they were)."""
    out_names = [s.name for s in spec.outputs]
    if not spec.inplace:
        return session.run(out_names, feeds)
    shared = {o: (i, np.array(feeds[i], copy=True)) for o, i in spec.inplace.items()}
    rest = [o for o in out_names if o not in shared]
    got = dict(zip(rest, run_bound(session, {k: v for k, v in feeds.items() if k not in spec.inplace.values()},
                                   rest, shared)))
    return settle(spec, feeds, [got[o] if o in got else shared[o][1] for o in out_names])


def settle(spec: GraphSpec, feeds: dict, outputs: list[np.ndarray]) -> list[np.ndarray]:
    """In-place outputs with the positions past each row's written ones zeroed (undefined there)."""
    if spec.valid_positions is None:
        return outputs
    valid = np.asarray(spec.valid_positions(feeds))
    out = []
    for s, a in zip(spec.outputs, outputs):
        if s.name in spec.inplace:
            a = a.copy()
            for row, n in enumerate(valid):
                a[row, :, int(n):] = 0
        out.append(a)
    return out


def compare_case(spec: GraphSpec, session, case: dict, feeds: dict, ref: list[np.ndarray]) -> list[OutputCheck]:
    """One check case's outputs from onnxruntime against the PyTorch outputs `ref`, per output."""
    results = []
    for name, r, g in zip([s.name for s in spec.outputs], ref, run_graph(spec, session, feeds)):
        tol = spec.tolerance_for(name)
        if r.shape != g.shape:
            results.append(OutputCheck(spec.name, case, name, list(g.shape), float("inf"), 0, float("inf"), 0, False))
            continue
        diff = np.abs(r.astype(np.float64) - g.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(r).max()) if r.size else 0.0
        allowed = 0.0 if tol.exact else tol.atol + tol.rtol * scale
        results.append(OutputCheck(spec.name, case, name, list(r.shape), max_abs, scale,
                                   max_abs / scale if scale else max_abs, allowed, max_abs <= allowed))
    return results


def check_graph(spec: GraphSpec, session, device: str = "cpu") -> list[OutputCheck]:
    return [c for case, feeds, ref in reference_cases(spec, device) for c in compare_case(spec, session, case, feeds, ref)]
