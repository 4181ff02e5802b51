"""The artifact contract: DIR/manifest.json lists every graph file with its hash and I/O, and the
runtime facts. Torch-free: the runtime and the web page depend on this alone."""

from __future__ import annotations

import json
from pathlib import Path

from voxport.errors import ArtifactError
from voxport.fsutil import sha256_file

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def load(artifact_dir: Path) -> dict:
    path = Path(artifact_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{artifact_dir}: no {MANIFEST}; not a voxport artifact directory (run `voxport export`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {manifest.get('format_version')!r}, "
                            f"this voxport reads {FORMAT_VERSION}")
    return manifest


def file_entry(root: Path, rel: str) -> dict:
    p = root / rel
    return {"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size}


def check_files(artifact_dir: Path, manifest: dict, graphs: list[str] | None = None) -> None:
    """Refuse to use files whose size or sha256 differs from the manifest (a damaged file is never
    loaded silently). `graphs` limits the check to the graphs a command will load."""
    root = Path(artifact_dir)
    entries = list(manifest.get("files", []))
    for name, g in manifest["graphs"].items():
        if graphs is None or name in graphs:
            entries += g["files"]
    problems = []
    for e in entries:
        p = root / e["path"]
        if not p.is_file():
            problems.append(f"{e['path']}: missing")
        elif p.stat().st_size != e["bytes"]:
            problems.append(f"{e['path']}: {p.stat().st_size} bytes, manifest says {e['bytes']}")
        elif sha256_file(p) != e["sha256"]:
            problems.append(f"{e['path']}: sha256 differs from the manifest")
    if problems:
        raise ArtifactError(f"{root}: files do not match {MANIFEST}: " + "; ".join(problems))


def graph_path(artifact_dir: Path, manifest: dict, graph: str) -> Path:
    try:
        return Path(artifact_dir) / manifest["graphs"][graph]["files"][0]["path"]
    except KeyError:
        raise ArtifactError(f"{artifact_dir}: manifest has no graph {graph!r}") from None
