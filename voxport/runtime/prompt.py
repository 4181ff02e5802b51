"""Text -> prompt token ids with the checkpoint's own tokenizer and chat template (no transformers)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from voxport.errors import InputError

AUDIO_TOKEN = "<|AUDIO|>"


@dataclass
class Utterance:
    text: str
    speaker: int = 0
    codes: np.ndarray | None = None  # [frames, K] for a context utterance with audio


def _raise(message):
    raise InputError(f"chat template: {message}")


class PromptBuilder:
    def __init__(self, artifact_dir: Path, rt: dict):
        root = Path(artifact_dir)
        self.rt = rt
        self.tokenizer = Tokenizer.from_file(str(root / rt["tokenizer_file"]))
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self.template = env.from_string((root / rt["chat_template_file"]).read_text())
        self.special = json.loads((root / rt["special_tokens_file"]).read_text())

    def render(self, turns: list[Utterance]) -> str:
        messages = []
        for u in turns:
            content = [{"type": "text", "text": u.text}]
            if u.codes is not None:
                content.append({"type": "audio"})
            messages.append({"role": str(u.speaker), "content": content})
        text = self.template.render(messages=messages, add_generation_prompt=False, **self.special)
        # one audio token per codec frame, in order (as CsmProcessor expands them)
        parts = text.split(AUDIO_TOKEN)
        frames = [u.codes.shape[0] for u in turns if u.codes is not None]
        if len(parts) - 1 != len(frames):
            raise InputError(f"chat template produced {len(parts) - 1} audio slots for {len(frames)} audio clips")
        return parts[0] + "".join(AUDIO_TOKEN * n + p for n, p in zip(frames, parts[1:]))

    def build(self, turns: list[Utterance]) -> tuple[np.ndarray, np.ndarray]:
        """input_ids [1, S] and audio_codes [1, S, K] for the embed graph."""
        ids = np.asarray(self.tokenizer.encode(self.render(turns), add_special_tokens=False).ids, dtype=np.int64)
        k = self.rt["num_codebooks"]
        codes = np.zeros((ids.shape[0], k), dtype=np.int64)
        audio_pos = np.flatnonzero(ids == self.rt["audio_token_id"])
        clips = [u.codes for u in turns if u.codes is not None]
        if clips:
            codes[audio_pos] = np.concatenate(clips, axis=0)
        # the audio-eos position carries an all-eos frame (transformers embeds it the same way)
        codes[ids == self.rt["audio_eos_token_id"]] = self.rt["codebook_eos_token_id"]
        return ids[None], codes[None]
