"""How many nodes each graph of an artifact holds, per precision (the file itself, not a formula).
Kernels actually run per call come from onnxruntime's profile (voxport/bench/runners.py `profile`)."""

from __future__ import annotations

from pathlib import Path

import onnx

from voxport import manifest as mf


def node_counts(art: Path, dtypes: list[str]) -> dict[str, dict[str, int]]:
    """{dtype: {graph: nodes}}; weights stay on disk."""
    manifest = mf.load(art)
    out: dict[str, dict[str, int]] = {}
    for d in dtypes:
        out[d] = {}
        for g in manifest["graphs"]:
            path = mf.graph_path(art, manifest, g, dtype=d)
            out[d][g] = len(onnx.load(str(path), load_external_data=False).graph.node)
    return out
