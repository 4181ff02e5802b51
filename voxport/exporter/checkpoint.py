"""Resolve MODEL (preset name, local checkpoint directory, or hub id) to a loaded reference model.

Every source ends as a local directory in save_pretrained layout, validated before torch touches it,
so a bad checkpoint fails with one line naming the problem and the path.
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


@dataclass
class Checkpoint:
    path: Path  # local directory in save_pretrained layout
    source: dict  # how to find it again: {"kind": "preset"|"dir"|"hub", ...}


def resolve(model: str, cache_root: Path | None = None) -> Checkpoint:
    from voxport.exporter.presets import all_presets, materialize

    presets = all_presets()
    if model in presets:
        return Checkpoint(materialize(model, cache_root), {"kind": "preset", "name": model,
                                                           "seed": presets[model][1].seed})
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")) or not _HUB_ID.match(model):
        validate_dir(path)
        return Checkpoint(path.resolve(), {"kind": "dir", "path": str(path.resolve())})
    return Checkpoint(_download(model), {"kind": "hub", "id": model})


def _download(repo_id: str) -> Path:
    # Fail fast where the hub is unreachable: short timeouts, no retries hanging the command.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "speech_tokenizer/*"]))
    except Exception as e:  # network errors, unknown repo, gated repo: all one message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{repo_id}: could not fetch from the Hugging Face hub ({first[:200]}); "
                              "download it on a machine with hub access and pass the local directory") from None
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
    family = family_for(cfg.get("model_type"))
    if family is None:
        known = ", ".join(t for f in families() for t in f.model_types)
        raise CheckpointError(f"{cfg_path}: unsupported architecture {cfg.get('model_type')!r} "
                              f"({', '.join(cfg.get('architectures') or []) or 'no architectures'}); "
                              f"voxport exports model_type {known}")
    check_weights(path)
    family.check_dir(path, cfg)


def family_of(path: Path):
    """The family class of a checked checkpoint directory."""
    return family_for(json.loads((Path(path) / "config.json").read_text()).get("model_type"))


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
            with safe_open(str(f), framework="numpy") as st:
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
