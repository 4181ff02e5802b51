"""What a CSM / Marvis checkpoint directory holds besides its weights (the layout of sesame/csm-1b),
how the reference model loads, and which of its files a runtime needs."""

from __future__ import annotations

import json
from pathlib import Path

from voxport.errors import CheckpointError

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


def check_dir(path: Path) -> None:
    if not (path / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"{path}: missing {TOKENIZER_FILE}; the checkpoint's tokenizer is needed")
    if chat_template(path) is None:
        raise CheckpointError(f"{path}: no chat template ({TEMPLATE_FILE}, or chat_template in "
                              "processor_config.json / tokenizer_config.json)")


def load(path: Path, device: str = "cpu"):
    import torch
    from transformers import CsmForConditionalGeneration

    return CsmForConditionalGeneration.from_pretrained(path, dtype=torch.float32).to(device).eval()


def write_runtime_files(src: Path, dst: Path) -> dict[str, str]:
    """Tokenizer, chat template, and the template's bos/eos strings, for torch-free runtimes."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src)
    (dst / TOKENIZER_FILE).write_bytes((src / TOKENIZER_FILE).read_bytes())
    (dst / TEMPLATE_FILE).write_text(chat_template(src))
    special = {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token}
    (dst / SPECIAL_TOKENS_FILE).write_text(json.dumps(special, indent=2))
    return {"tokenizer_file": TOKENIZER_FILE, "chat_template_file": TEMPLATE_FILE,
            "special_tokens_file": SPECIAL_TOKENS_FILE}
