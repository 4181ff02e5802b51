"""Text -> the prompt graph's inputs, in the format the manifest names (generation.prompt.format),
with the checkpoint's own tokenizer (no transformers).

"chat_template": the checkpoint's Jinja chat template renders the turns; each context clip's audio
is one audio token per codec frame, its codes on a parallel [S, K] track (CSM's processor layout)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from voxport.errors import ArtifactError, InputError


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
        self.spec = spec = rt["generation"]["prompt"]
        if spec["format"] != "chat_template":
            raise ArtifactError(f"{artifact_dir}: prompt format {spec['format']!r} is not known to this runtime")
        self.graph = spec["graph"]
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
        audio_token = self.spec["audio_token"]
        parts = text.split(audio_token)
        frames = [u.codes.shape[0] for u in turns if u.codes is not None]
        if len(parts) - 1 != len(frames):
            raise InputError(f"chat template produced {len(parts) - 1} audio slots for {len(frames)} audio clips")
        return parts[0] + "".join(audio_token * n + p for n, p in zip(frames, parts[1:]))

    def build(self, turns: list[Utterance]) -> tuple[np.ndarray, np.ndarray]:
        """input_ids [1, S] and audio_codes [1, S, K] for the prompt graph."""
        spec = self.spec
        ids = np.asarray(self.tokenizer.encode(self.render(turns), add_special_tokens=False).ids, dtype=np.int64)
        codes = np.zeros((ids.shape[0], spec["codebooks"]), dtype=np.int64)
        audio_pos = np.flatnonzero(ids == spec["audio_token_id"])
        clips = [u.codes for u in turns if u.codes is not None]
        if clips:
            codes[audio_pos] = np.concatenate(clips, axis=0)
        # the audio-eos position carries an all-eos frame (transformers embeds it the same way)
        codes[ids == spec["audio_eos_token_id"]] = spec["audio_eos_frame_token"]
        return ids[None], codes[None]

    def feeds(self, ids: np.ndarray, codes: np.ndarray) -> dict[str, np.ndarray]:
        return {self.spec["ids"]: ids, self.spec["codes"]: codes}
