"""Resolve MODEL (preset name, local checkpoint directory, or hub id) to a loaded reference model.

Every source ends as a local directory in save_pretrained layout, validated before torch touches it,
so a bad checkpoint fails with one line naming the problem and the path.

Parts a checkpoint ships without (a tokenizer, a codec: `voxport export --tokenizer --codec`) are each
a directory or hub id; the checkpoint is then seen through a directory of links in the cache holding
its own files plus `tokenizer/` and `codec/`, so the family checks and loads one directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from voxport.errors import CheckpointError
from voxport.exporter.families import families, family_for

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# what a part needs from the hub (never another model's weights for a tokenizer)
PART_FILES = {"tokenizer": ["*.json", "*.txt", "*.model", "*.jinja"], "codec": ["*.json", "*.safetensors"]}


@dataclass
class Checkpoint:
    path: Path  # local directory in save_pretrained layout
    source: dict  # how to find it again: {"kind": "preset"|"dir"|"hub", ...}


def resolve(model: str, cache_root: Path | None = None, parts: dict[str, str | None] | None = None) -> Checkpoint:
    from voxport.exporter.presets import all_presets, materialize

    parts = {k: v for k, v in (parts or {}).items() if v}
    presets = all_presets()
    if model in presets and not parts:
        return Checkpoint(materialize(model, cache_root), {"kind": "preset", "name": model,
                                                           "seed": presets[model][1].seed})
    if model in presets:
        path, source = materialize(model, cache_root), {"kind": "preset", "name": model, "seed": presets[model][1].seed}
    elif Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or not _HUB_ID.match(model):
        path = Path(model).expanduser()
        if not parts:
            validate_dir(path)
        path = path.resolve()
        source = {"kind": "dir", "path": str(path)}
    else:
        path, source = _download(model, validate=not parts), {"kind": "hub", "id": model}
    if not parts:
        return Checkpoint(path, source)
    local = {name: _part(name, ref) for name, ref in parts.items()}
    joined = _join(path, local, cache_root)
    try:
        validate_dir(joined)
    except CheckpointError as e:  # name the user's directory, not the links standing for it
        raise CheckpointError(str(e).replace(str(joined), str(path))) from None
    return Checkpoint(joined, {**source, "parts": {name: str(p) if Path(parts[name]).expanduser().exists() else parts[name]
                                                   for name, p in local.items()}})


def _part(name: str, ref: str) -> Path:
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists() or ref.startswith((".", "/", "~")) or not _HUB_ID.match(ref):
        raise CheckpointError(f"--{name} {ref}: not a directory or a hub id")
    return _snapshot(ref, PART_FILES[name])


def _join(path: Path, parts: dict[str, Path], cache_root: Path | None) -> Path:
    """A directory of links: the checkpoint's entries, each part under its name (replacing one there)."""
    import hashlib

    from voxport.fsutil import atomic_dir, cache_root as default_root

    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory, a preset name, or a hub id")
    key = json.dumps([str(path), sorted((k, str(v)) for k, v in parts.items())]).encode()
    root = Path(cache_root or default_root())
    out = root / "joined" / f"{path.name}-{hashlib.sha256(key).hexdigest()[:12]}"
    with atomic_dir(out) as tmp:
        for entry in path.iterdir():
            if entry.name not in parts:
                (tmp / entry.name).symlink_to(entry.resolve())
        for name, src in parts.items():
            (tmp / name).symlink_to(src)
    return out


def _snapshot(repo_id: str, patterns: list[str]) -> Path:
    # Fail fast where the hub is unreachable: short timeouts, no retries hanging the command.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # network errors, unknown repo, gated repo: all one message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{repo_id}: could not fetch from the Hugging Face hub ({first[:200]}); "
                              "download it on a machine with hub access and pass the local directory") from None


def _download(repo_id: str, validate: bool = True) -> Path:
    path = _snapshot(repo_id, ["*.json", "*.safetensors", "*.jinja", "*.txt", "speech_tokenizer/*"])
    if validate:
        validate_dir(path)
    return path


def validate_dir(path: Path) -> None:
    """Cheap structural checks, each failure naming what is wrong and where."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory, a preset name, or a hub id")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{path}: no config.json; not a transformers checkpoint directory")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: config.json is not valid JSON ({e})") from None
    family = family_for(cfg)
    if family is None:
        known = ", ".join(t for f in families() for t in f.model_types)
        raise CheckpointError(f"{cfg_path}: unsupported architecture {cfg.get('model_type')!r} "
                              f"({', '.join(cfg.get('architectures') or []) or 'no architectures'}); "
                              f"voxport exports model_type {known}")
    check_weights(path)
    family.check_dir(path, cfg)


def family_of(path: Path):
    """The family class of a checked checkpoint directory."""
    return family_for(json.loads((Path(path) / "config.json").read_text()))


def check_weights(path: Path) -> None:
    """Every safetensors file (and shard the index names) present and readable."""
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors weight files")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            wanted = set(json.loads(index.read_text())["weight_map"].values())
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: unreadable shard index ({e})") from None
        missing = sorted(wanted - {f.name for f in files})
        if missing:
            raise CheckpointError(f"{path}: missing weight shards: {', '.join(missing)}")
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:  # numpy has no bfloat16
                keys = list(st.keys())
                if keys:  # header offsets are checked against the file size when a tensor is read
                    st.get_slice(keys[-1])[...]
        except Exception as e:
            raise CheckpointError(f"{f}: corrupt or truncated safetensors file ({str(e)[:160]})") from None


def load(ckpt: Checkpoint, device: str = "cpu"):
    """The reference model (fp32, eval) and its family class."""
    family = family_of(ckpt.path)
    try:
        model = family.load(ckpt.path, device)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{ckpt.path}: could not load it ({str(e).splitlines()[0][:200]})") from None
    return model, family
