"""What a CSM / Marvis checkpoint directory holds besides its weights, how the reference model loads,
and which of its files a runtime needs. Two layouts: transformers' (sesame/csm-1b, the `-transformers`
repos) and the original one (original.py)."""

from __future__ import annotations

import json
from pathlib import Path

from voxport.errors import CheckpointError
from voxport.exporter.families.csm import original

TOKENIZER_FILE = "tokenizer.json"
TEMPLATE_FILE = "chat_template.jinja"
SPECIAL_TOKENS_FILE = "special_tokens.json"


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


def check_dir(path: Path, config: dict) -> None:
    if original.is_original(config):
        return original.check_dir(path, config)
    for part in (original.TOKENIZER_DIR, original.CODEC_DIR):
        if (path / part).exists():
            raise CheckpointError(f"{path}: a transformers CSM checkpoint holds its own tokenizer and codec; "
                                  f"--{part} is for the original layout, which ships without them")
    if not (path / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"{path}: missing {TOKENIZER_FILE}; the checkpoint's tokenizer is needed")
    if chat_template(path) is None:
        raise CheckpointError(f"{path}: no chat template ({TEMPLATE_FILE}, or chat_template in "
                              "processor_config.json / tokenizer_config.json)")


def _original(path: Path) -> bool:
    return original.is_original(json.loads((path / "config.json").read_text()))


def load(path: Path, device: str = "cpu"):
    if _original(path):
        return original.load(path, device)
    import torch
    from transformers import CsmForConditionalGeneration

    return CsmForConditionalGeneration.from_pretrained(path, dtype=torch.float32).to(device).eval()


def write_runtime_files(src: Path, dst: Path) -> dict[str, str]:
    """Tokenizer, chat template, and the template's bos/eos strings, for torch-free runtimes."""
    from transformers import AutoTokenizer

    from voxport.exporter.families.csm.presets import CSM_CHAT_TEMPLATE

    files = {"tokenizer_file": TOKENIZER_FILE, "chat_template_file": TEMPLATE_FILE,
             "special_tokens_file": SPECIAL_TOKENS_FILE}
    if _original(src):
        original.write_runtime_files(src, dst, tuple(files.values()), CSM_CHAT_TEMPLATE)
        return files

    tokenizer = AutoTokenizer.from_pretrained(src)
    (dst / TOKENIZER_FILE).write_bytes((src / TOKENIZER_FILE).read_bytes())
    (dst / TEMPLATE_FILE).write_text(chat_template(src))
    special = {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token}
    (dst / SPECIAL_TOKENS_FILE).write_text(json.dumps(special, indent=2))
    return files


def processor(path: Path):
    """transformers' processor of the checkpoint (the parity cases build prompts with it)."""
    if _original(path):
        from voxport.exporter.families.csm.presets import CSM_CHAT_TEMPLATE

        return original.processor(path, CSM_CHAT_TEMPLATE)
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path)
