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

TOKENIZER_FILE = "tokenizer.json"
TEMPLATE_FILE = "chat_template.jinja"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Checkpoint:
    path: Path  # local directory in save_pretrained layout
    source: dict  # how to find it again: {"kind": "preset"|"dir"|"hub", ...}


def resolve(model: str, cache_root: Path | None = None) -> Checkpoint:
    from voxport.exporter.presets import PRESETS, materialize

    if model in PRESETS:
        return Checkpoint(materialize(model, cache_root), {"kind": "preset", "name": model,
                                                           "seed": PRESETS[model].seed})
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
        path = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt"]))
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
    model_type = cfg.get("model_type")
    if model_type != "csm":
        raise CheckpointError(f"{cfg_path}: unsupported architecture {model_type!r} "
                              f"({', '.join(cfg.get('architectures') or []) or 'no architectures'}); "
                              "voxport exports CsmForConditionalGeneration (model_type 'csm')")
    _check_weights(path)
    if not (path / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"{path}: missing {TOKENIZER_FILE}; the checkpoint's tokenizer is needed")
    if chat_template(path) is None:
        raise CheckpointError(f"{path}: no chat template ({TEMPLATE_FILE}, or chat_template in "
                              "processor_config.json / tokenizer_config.json)")


def _check_weights(path: Path) -> None:
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


def chat_template(path: Path) -> str | None:
    if (path / TEMPLATE_FILE).is_file():
        return (path / TEMPLATE_FILE).read_text()
    for name in ("processor_config.json", "tokenizer_config.json", "chat_template.json"):
        f = path / name
        if f.is_file():
            try:
                tpl = json.loads(f.read_text()).get("chat_template")
            except json.JSONDecodeError:
                continue
            if isinstance(tpl, str):
                return tpl
    return None


def load(ckpt: Checkpoint, device: str = "cpu"):
    """The reference model (fp32, eval) and its tokenizer."""
    import torch
    from transformers import AutoTokenizer, CsmForConditionalGeneration

    try:
        model = CsmForConditionalGeneration.from_pretrained(ckpt.path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(ckpt.path)
    except Exception as e:
        raise CheckpointError(f"{ckpt.path}: transformers could not load it ({str(e).splitlines()[0][:200]})") from None
    return model.to(device).eval(), tokenizer
