"""The artifact contract: DIR/manifest.json lists every graph's variants (fp32, fp16, q8, q4, q4f16),
each with its files (sha256, bytes) and the precision of what it holds; the graph's I/O; and the
runtime facts. Torch-free: the runtime and the web page depend on this alone.

    graphs[name] = {"inputs": [...], "outputs": [...],
                    "variants": {dtype: {"files": [{"path", "sha256", "bytes"}], "precision": {...}}}}
    dtypes = ["fp32", ...]   # the variants every graph has
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from voxport import dtypes as dt
from voxport.errors import ArtifactError, DtypeError
from voxport.fsutil import sha256_file

MANIFEST = "manifest.json"
# 3: frame graphs batch rows and keep their KV cache in static buffers (generation.frame.cache layout
# "static"); 2: per-graph precision variants; 1: one fp32 file list per graph
FORMAT_VERSION = 3
SCHEMA = Path(__file__).with_name("manifest.schema.json")  # published with the package (README: The manifest)


@functools.cache
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_problem(manifest) -> str | None:
    """The most relevant way `manifest` breaks manifest.schema.json, in one line (None: it conforms)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(manifest))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    message = " ".join(error.message.split())
    if len(message) > 160:  # jsonschema quotes the offending value, which may be a whole section
        message = message[:157] + "..."
    return f"{where or 'top level'}: {message}"


def load(artifact_dir: Path) -> dict:
    """The manifest of DIR, checked against the published schema: a damaged one is one ArtifactError."""
    path = Path(artifact_dir) / MANIFEST
    try:
        if not path.is_file():
            raise ArtifactError(f"{artifact_dir}: no {MANIFEST}; not a voxport artifact directory "
                                "(run `voxport export`)")
        manifest = json.loads(path.read_text())
    except OSError as e:  # an unreadable directory or file
        raise ArtifactError(f"{path}: cannot read it ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({str(e)[:160]})") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        hint = "; re-export it with this voxport (`voxport export`)" if isinstance(version, int) and version < FORMAT_VERSION \
            else ""
        raise ArtifactError(f"{path}: format_version {version!r}, this voxport reads {FORMAT_VERSION}{hint}")
    problem = schema_problem(manifest)
    if problem:
        raise ArtifactError(f"{path}: not a valid voxport manifest ({SCHEMA.name}): {problem}")
    return manifest


def is_artifact_dir(path: Path) -> bool:
    """Whether `path` holds a manifest voxport wrote (any format version): what `export -o` may replace."""
    try:
        m = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and "format_version" in m and isinstance(m.get("toolchain"), dict) \
        and "voxport" in m["toolchain"]


def file_entry(root: Path, rel: str) -> dict:
    p = root / rel
    return {"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size}


def variant(manifest: dict, graph: str, dtype: str = "fp32", where: Path | str = "") -> dict:
    """The manifest entry of one graph in one precision; a specific error when it is not there."""
    dt.check(dtype)
    g = manifest.get("graphs", {}).get(graph)
    if g is None:
        raise ArtifactError(f"{where}: manifest has no graph {graph!r}")
    v = g.get("variants", {}).get(dtype)
    if v is None:
        have = ", ".join(g.get("variants", {})) or "none"
        raise DtypeError(f"{where}: graph {graph!r} has no {dtype} variant (exported: {have}); "
                         f"re-export with `voxport export MODEL --dtypes {dtype}`")
    return v


def file_problems(root: Path, entries: list[dict], hash_files: bool = True) -> list[str]:
    """What is wrong with these files against their manifest entries (empty: all good)."""
    problems, seen = [], set()
    for e in entries:
        if e["path"] in seen:  # a variant may share a file with another (see voxport/exporter/quantize.py)
            continue
        seen.add(e["path"])
        p = Path(root) / e["path"]
        if not p.is_file():
            problems.append(f"{e['path']}: missing")
        elif p.stat().st_size != e["bytes"]:
            problems.append(f"{e['path']}: {p.stat().st_size} bytes, manifest says {e['bytes']} (truncated or replaced)")
        elif hash_files and sha256_file(p) != e["sha256"]:
            problems.append(f"{e['path']}: sha256 differs from the manifest (damaged or edited)")
    return problems


def entries(manifest: dict, graphs: list[str] | None = None, dtype: str | None = None) -> list[dict]:
    """Non-graph files, plus the files of `graphs` (None: all) in `dtype` (None: every variant)."""
    out = list(manifest.get("files", []))
    for name, g in manifest["graphs"].items():
        if graphs is None or name in graphs:
            for d, v in g["variants"].items():
                if dtype is None or d == dtype:
                    out += v["files"]
    return out


def check_files(artifact_dir: Path, manifest: dict, graphs: list[str] | None = None, dtype: str | None = None) -> None:
    """Refuse to use files whose size or sha256 differs from the manifest (a damaged file is never
    loaded silently). `graphs` and `dtype` limit the check to what a command will load."""
    if dtype is not None:
        for name in graphs if graphs is not None else manifest["graphs"]:
            variant(manifest, name, dtype, artifact_dir)
    problems = file_problems(Path(artifact_dir), entries(manifest, graphs, dtype))
    if problems:
        raise ArtifactError(f"{artifact_dir}: files do not match {MANIFEST}: " + "; ".join(problems))


def graph_path(artifact_dir: Path, manifest: dict, graph: str, dtype: str = "fp32") -> Path:
    return Path(artifact_dir) / variant(manifest, graph, dtype, artifact_dir)["files"][0]["path"]


def variant_bytes(manifest: dict, dtype: str) -> int:
    """Total size of one precision's graph files (shared files counted once)."""
    files = {e["path"]: e["bytes"] for e in entries({"graphs": manifest["graphs"]}, None, dtype)}
    return sum(files.values())
