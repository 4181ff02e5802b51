"""Streaming speech from the fused `frame` graph: one runtime call per frame, PCM as soon as a
chunk of frames exists, text longer than one utterance split at sentences with the codec state
carried across the joins."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from voxport.runtime.chunking import plan_utterances
from voxport.runtime.codec_stream import CodecStream, codec_rng
from voxport.runtime.contract import FrameContract
from voxport.runtime.runtime import Runtime
from voxport.runtime.prompt import Utterance
from voxport.runtime.sampling import Sampling
from voxport.errors import InputError


@dataclass
class Speech:
    """One request. Iterate it for float32 PCM chunks; `codes` and `stats` fill in as it goes.
    A consumer that stops early (closes the iterator, breaks out of the loop) ends generation; so does
    setting `cancel` (a threading.Event, for a consumer in another thread), checked before every frame.
    `sentences`, when given, replaces `text`: utterances as they come (the iterator may block, e.g. on
    a live text stream), spoken in order with one codec stream and each as the next one's context."""

    rt: Runtime
    text: str
    speaker: int | str | None = None  # None: the model's first speaker
    context: list[Utterance] = field(default_factory=list)
    language: str | None = None  # where the prompt format takes one (None: auto)
    instruct: str | None = None  # where the model takes a style instruction
    max_frames: int | None = None  # per utterance; None: the model's (manifest generation.defaults)
    sampling: Sampling = Sampling()
    seed: int = 0
    chunk_frames: int = 1
    cancel: object | None = None  # anything with is_set(): threading.Event
    sentences: Iterable[str] | None = None
    codes: list[np.ndarray] = field(default_factory=list)  # every generated frame, eos frames included
    utterances: list[dict] = field(default_factory=list)  # per utterance: text, first frame, frames
    stats: dict = field(default_factory=dict)
    # wall time of every frame call (the first of an utterance includes its prompt) and codec call
    timings: dict = field(default_factory=lambda: {"frame_s": [], "codec_s": []})

    def __iter__(self):
        if self.chunk_frames < 1:
            raise InputError(f"chunk size must be >= 1 frame, got {self.chunk_frames}")
        self.contract = FrameContract(self.rt.rt)
        self.max_frames = self.contract.max_frames(self.max_frames)
        self.contract.sampling_feeds(self.sampling)  # checks the settings against every group
        if self.speaker is None:
            self.speaker = self.rt.default_speaker
        return self._run()

    def _run(self):
        rt, t0 = self.rt, time.perf_counter()
        timer = {"prefill_s": 0.0, "frames_s": 0.0, "codec_s": 0.0}
        calls = {"embed": 0, "frame": 0}
        codec, rng = CodecStream(rt.graphs, rng=codec_rng(self.seed)), np.random.default_rng(self.seed)
        samples, first_audio = 0, None
        self.stats = {"stages": timer}

        def emit(pending):
            nonlocal samples, first_audio
            t = time.perf_counter()
            pcm = codec.decode(np.stack(pending)) if pending else codec.flush()
            self.timings["codec_s"].append(time.perf_counter() - t)
            timer["codec_s"] += self.timings["codec_s"][-1]
            samples += pcm.shape[0]
            if pcm.shape[0]:  # a codec that looks ahead returns nothing for its first frames
                first_audio = first_audio or time.perf_counter() - t0
            self._update(t0, timer, calls, codec.calls, samples, first_audio)
            return pcm

        try:
            context = list(self.context)
            for text in self._plan():
                context = self._fit_context(text, context)
                start, pending = len(self.codes), []
                for frame in self._frames(text, context, rng, timer, calls):
                    self.codes.append(frame)
                    if self._is_eos(frame):
                        break
                    pending.append(frame)
                    if len(pending) == self.chunk_frames:
                        pcm = emit(pending)
                        if pcm.shape[0]:
                            yield pcm
                        pending = []
                if pending and not self._cancelled():
                    pcm = emit(pending)
                    if pcm.shape[0]:
                        yield pcm
                spoken = np.stack(self.codes[start:]) if len(self.codes) > start else np.zeros((0, 1), np.int64)
                spoken = spoken[: len(spoken) - int(len(spoken) > 0 and self._is_eos(spoken[-1]))]
                self.utterances.append({"text": text, "first_frame": start, "frames": int(len(spoken))})
                if self._cancelled():
                    return
                if self.rt.prompts.carries_context:
                    context = [self._utterance(text, spoken)] if len(spoken) else []
            if codec.delay and not self._cancelled():  # the audio a look-ahead codec still holds
                yield emit([])
        finally:
            self._update(t0, timer, calls, codec.calls, samples, first_audio)

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _is_eos(self, frame: np.ndarray) -> bool:
        # the manifest's stop rule; the stop frame is kept in `codes` but is not audio
        return self.contract.is_stop(frame)

    def _plan(self) -> Iterable[str]:
        if self.sentences is not None:  # lazily: the source may still be being written
            return (part for s in self.sentences for part in self._split(s))
        return self._split(self.text)

    def _split(self, text: str) -> list[str]:
        carried = self.rt.prompts.carries_context
        ctx_tokens = self.rt.prompts.build(self.context)[0].shape[1] if self.context and carried else 0
        limit = self.rt.rt["max_positions"] - ctx_tokens

        def tokens(t: str) -> int:
            return self.rt.prompts.build([*self._fixed_context(), self._utterance(t)])[0].shape[1]

        if not text.strip():
            raise InputError("text is empty")
        frames = self.max_frames * self.contract.steps  # cache positions the frames take
        if tokens(text) + frames <= limit:
            return [text]
        # leave room for the previous utterance (text and audio) as the next one's context
        return plan_utterances(text, lambda t: tokens(t) + frames <= limit // 2)

    def _fit_context(self, text: str, context: list[Utterance]) -> list[Utterance]:
        """Carry the previous utterance as context while it fits beside the new one; else none."""
        if not context or not self.rt.prompts.carries_context:
            return context
        n = self.rt.prompts.build([*context, self._utterance(text)])[0].shape[1]
        return context if n + self.max_frames * self.contract.steps <= self.rt.rt["max_positions"] else []

    def _utterance(self, text: str, codes: np.ndarray | None = None) -> Utterance:
        return Utterance(text, self.speaker, codes, self.language, self.instruct)

    def _fixed_context(self) -> list[Utterance]:
        """A format that does not carry context still keeps the caller's (a cloned voice) each time."""
        return [] if self.rt.prompts.carries_context else list(self.context)

    def _frames(self, text, context, rng, timer, calls):
        """Frame codes from the fused graph: embed the prompt once, then one call per frame."""
        c, graphs = self.contract, self.rt.graphs
        t = time.perf_counter()
        prepared = self.rt.prepare([*context, self._utterance(text)], self.max_frames, self.sampling)
        embeds, per_frame = self.rt.embed(prepared)
        calls["embed"] += 1
        cache, pos, sampling = c.empty_cache(), 0, c.sampling_feeds(self.sampling)
        logits = c.logits_state(self.sampling)
        for n in range(prepared.max_frames):
            if self._cancelled():
                return
            extra = {**per_frame[min(n, len(per_frame) - 1)], **(logits.feeds() if logits else {})}
            out = graphs.session(c.graph).run(c.outputs, c.feeds(embeds, cache, pos, sampling, c.draw_noise(rng), extra))
            calls["frame"] += 1
            codes, pos, embeds, cache = out[0][0], pos + c.advance(embeds.shape[1]), out[1], out[2:]
            if logits:
                logits.update(codes)
            self.timings["frame_s"].append(time.perf_counter() - t)
            timer["prefill_s" if n == 0 else "frames_s"] += self.timings["frame_s"][-1]
            yield codes
            t = time.perf_counter()

    def _update(self, t0, timer, calls, codec_calls, samples, first_audio):
        wall = time.perf_counter() - t0
        frames = len(self.codes)
        audio_s = samples / self.rt.rt["sample_rate"]
        self.stats.update({
            "frames": frames, "utterances": len(self.utterances) or 1, "audio_s": round(audio_s, 4),
            "wall_s": round(wall, 4), "rtf": round(wall / audio_s, 4) if audio_s else None,
            "first_audio_s": None if first_audio is None else round(first_audio, 4),
            # generation calls only: the prompt's embed call and the codec calls are counted apart
            "runtime_calls_per_frame": round(calls["frame"] / frames, 4) if frames else None,
            "embed_calls": calls["embed"], "codec_calls": codec_calls, "chunk_frames": self.chunk_frames,
            "stages": {k: round(v, 4) for k, v in timer.items()},
        })
