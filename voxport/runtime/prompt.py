"""Text -> the prompt graph's inputs, in the format the manifest names (generation.prompt.format),
with the checkpoint's own tokenizer (no transformers).

"chat_template": the checkpoint's Jinja chat template renders the turns; each context clip's audio
is one audio token per codec frame, its codes on a parallel [S, K] track (CSM's processor layout).

"dual_track": a text track and a codec track per position (Qwen3-TTS's talker), summed by the
prompt graph; control ids (think, language, speaker) ride the codec track; the text after the first
token is fed one token per frame (`trailing`), then the pad token; a cloned voice adds its speaker
vector at the speaker position and its reference text and codes in context.

"token_ids": fixed ids around the tokenized template ("{speaker}: {text}", the tokenizer's own
special tokens added): prefix + tokens + suffix, one prompt graph input (ids); named speakers only,
no context audio.

Every builder gives: build(turns) -> the prompt graph's two inputs, feeds(a, b), trailing(turns) ->
text ids fed per frame (None: none), vectors(turns) -> (row, vector) pairs added to the embeddings."""

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
    speaker: int | str | None = 0
    codes: np.ndarray | None = None  # [frames, K] for a context utterance with audio
    language: str | None = None  # dual_track: a language name, or None / "auto"
    instruct: str | None = None  # dual_track: a style instruction, where the model takes one
    vector: np.ndarray | None = None  # dual_track: a cloned voice's speaker vector [hidden]


def PromptBuilder(artifact_dir: Path, rt: dict):  # noqa: N802  (a factory standing for the builders)
    """The builder of the manifest's prompt format."""
    fmt = rt["generation"]["prompt"]["format"]
    if fmt not in FORMATS:
        raise ArtifactError(f"{artifact_dir}: prompt format {fmt!r} is not known to this runtime "
                            f"(known: {', '.join(FORMATS)})")
    return FORMATS[fmt](Path(artifact_dir), rt)


def _raise(message):
    raise InputError(f"chat template: {message}")


class ChatTemplatePrompt:
    carries_context = True  # each utterance of a long text is the next one's context (CSM's turns)

    def __init__(self, root: Path, rt: dict):
        self.rt = rt
        self.spec = spec = rt["generation"]["prompt"]
        self.graph = spec["graph"]
        self.tokenizer = Tokenizer.from_file(str(root / rt["tokenizer_file"]))
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self.template = env.from_string((root / rt["chat_template_file"]).read_text())
        self.special = json.loads((root / rt["special_tokens_file"]).read_text())

    def check(self, u: Utterance) -> None:
        if u.language not in (None, "auto"):
            raise InputError("this model takes no language option; it speaks the language of the text")
        if u.instruct:
            raise InputError("this model takes no instruction (--instruct)")

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

    def trailing(self, turns: list[Utterance]) -> None:
        return None

    def vectors(self, turns: list[Utterance]) -> list:
        return []


class DualTrackPrompt:
    carries_context = False  # the context is the caller's cloned voice, the same for every utterance

    def __init__(self, root: Path, rt: dict):
        self.spec = spec = rt["generation"]["prompt"]
        self.graph, self.none, self.groups = spec["graph"], spec["none"], spec["groups"]
        self.tokenizer = Tokenizer.from_file(str(root / rt["tokenizer_file"]))

    def _ids(self, template: str, text: str) -> list[int]:
        return self.tokenizer.encode(template.format(text=text), add_special_tokens=False).ids

    def check(self, u: Utterance) -> None:
        s = self.spec
        if u.language not in (None, "auto") and u.language not in s["languages"]:
            raise InputError(f"language {u.language!r} is not one this model speaks; languages: "
                             f"auto, {', '.join(sorted(s['languages']))}")
        if u.speaker is not None and str(u.speaker) not in s["speakers"]:
            named = ", ".join(sorted(s["speakers"])) or "none (it clones a voice from a reference clip)"
            raise InputError(f"speaker {u.speaker!r} is not one of this model's speakers: {named}")
        if u.instruct and not s["instruct"]:
            raise InputError("this model takes no instruction (--instruct); voxport follows the reference, "
                             "which ignores it for this model type and size")

    def stable(self, text: str) -> str:
        """The longest start of `text` whose token ids no continuation can change. The pre-tokenizer
        cuts text into pieces (words with their leading space, digits, punctuation runs) that BPE never
        merges across, and more text can only change the last piece ("fo" -> "fox", "  " -> " " + " b")."""
        pieces = self.tokenizer.pre_tokenizer.pre_tokenize_str(text) if self.tokenizer.pre_tokenizer else []
        return text[:pieces[-1][1][0]] if pieces else ""

    def _rows(self, turns: list[Utterance], final: bool = True) -> tuple[list, list[int], list] | None:
        """(text id, codec ids) per position, the trailing text ids, and the speaker-vector rows. Not
        `final` (the text so far of one still being written): the trailing ids known so far, no end;
        None while the text is too short to fix the prompt."""
        s, none, g = self.spec, self.none, self.groups
        *context, u = turns
        self.check(u)
        ref = context[-1] if context else None
        if ref is not None and not s["voice_clone"]:
            raise InputError("this model does not clone voices (a reference clip needs a Base model)")
        t, c = s["text_ids"], s["codec_ids"]
        ids = self._ids(s["template"], u.text)
        head, tail = s["head"], s["tail"]
        text_ids, end = ids[head:len(ids) - tail], [t["eos"]] if final else []
        if not final and not text_ids:
            return None
        rows = [(i, [none] * g) for i in (self._ids(s["instruct_template"], u.instruct) if u.instruct else [])]
        rows += [(i, [none] * g) for i in ids[:head]]
        speaker = None if u.speaker is None else str(u.speaker)
        lang = None if u.language in (None, "auto") else s["languages"][u.language]
        if speaker in s["dialects"] and u.language in (None, "auto", "chinese"):
            lang = s["languages"][s["dialects"][speaker]]
        think = ([c["nothink"], c["think_bos"], c["think_eos"]] if lang is None
                 else [c["think"], c["think_bos"], lang, c["think_eos"]])
        specials = think + ([s["speakers"][speaker]] if speaker else [none] if ref is not None else [])
        rows += [(t["pad"], [x] + [none] * (g - 1)) for x in specials]
        vectors = [(len(rows) - 1, ref.vector)] if ref is not None and ref.vector is not None else []
        rows.append((t["bos"], [c["pad"]] + [none] * (g - 1)))
        if ref is None:
            return rows + [(text_ids[0], [c["bos"]] + [none] * (g - 1))], [*text_ids[1:], *end], vectors
        ref_ids = self._ids(s["ref_template"], ref.text)
        text = [*ref_ids[s["ref_head"]:-s["ref_tail"]], *text_ids, *end]
        codec = [[c["bos"]] + [none] * (g - 1), *np.asarray(ref.codes).tolist()]
        if len(text) > len(codec):  # the text outruns the reference's codes: the rest trails
            return rows + list(zip(text, codec)), text[len(codec):], vectors
        if not final:  # the whole text still sits beside the reference's codes: more may change the prompt
            return None
        return rows + list(zip(text + [t["pad"]] * (len(codec) - len(text)), codec)), [], vectors

    def build(self, turns: list[Utterance], final: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
        """text_ids [1, S] and codec_ids [1, S, G] for the prompt graph (None: see `_rows`)."""
        parts = self._rows(turns, final)
        if parts is None:
            return None
        rows = parts[0]
        return (np.array([[r[0] for r in rows]], np.int64), np.array([[r[1] for r in rows]], np.int64))

    def feeds(self, text: np.ndarray, codec: np.ndarray) -> dict[str, np.ndarray]:
        return {self.spec["text"]: text, self.spec["codes"]: codec}

    def trailing(self, turns: list[Utterance], final: bool = True) -> np.ndarray:
        """Text ids fed one per frame: the rest of the text, its end, then the pad id (repeated by the
        runtime once these run out). Not `final`: the ids known so far, nothing after them."""
        return np.array([*self._rows(turns, final)[1], *([self.spec["text_ids"]["pad"]] if final else [])], np.int64)

    def trailing_feeds(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The prompt graph's inputs that embed text ids alone (codec track empty)."""
        return self.feeds(ids[None], np.full((1, len(ids), self.groups), self.none, np.int64))

    def vectors(self, turns: list[Utterance], final: bool = True) -> list:
        return self._rows(turns, final)[2]


class TokenIdsPrompt:
    carries_context = False  # each utterance stands alone

    def __init__(self, root: Path, rt: dict):
        self.spec = rt["generation"]["prompt"]
        self.speakers = rt["generation"]["speakers"]["names"]
        self.graph = self.spec["graph"]
        self.tokenizer = Tokenizer.from_file(str(root / rt["tokenizer_file"]))

    def check(self, u: Utterance) -> None:
        if u.language not in (None, "auto"):
            raise InputError("this model takes no language option; it speaks the language of the text")
        if u.instruct:
            raise InputError("this model takes no instruction (--instruct)")
        if u.speaker is not None and str(u.speaker) not in self.speakers:
            raise InputError(f"speaker {u.speaker!r} is not one of this model's speakers: {', '.join(self.speakers)}")

    def build(self, turns: list[Utterance]) -> tuple[np.ndarray, None]:
        """input_ids [1, S] of the last turn (the format takes no context)."""
        *context, u = turns
        if context:
            raise InputError("this model does not clone voices (it takes no reference clip)")
        self.check(u)
        s = self.spec
        text = s["template"].format(speaker=u.speaker, text=u.text) if u.speaker is not None else u.text
        ids = self.tokenizer.encode(text, add_special_tokens=s["add_special_tokens"]).ids
        return np.array([[*s["prefix"], *ids, *s["suffix"]]], np.int64), None

    def feeds(self, ids: np.ndarray, _: None) -> dict[str, np.ndarray]:
        return {self.spec["ids"]: ids}

    def trailing(self, turns: list[Utterance]) -> None:
        return None

    def vectors(self, turns: list[Utterance]) -> list:
        return []


FORMATS = {"chat_template": ChatTemplatePrompt, "dual_track": DualTrackPrompt, "token_ids": TokenIdsPrompt}
