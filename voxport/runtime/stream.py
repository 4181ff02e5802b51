"""Streaming speech from the fused `frame` graph: one runtime call per frame, PCM as soon as a
chunk of frames exists, text longer than one utterance split at sentences with the codec state
carried across the joins."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from voxport.runtime.batch import Lane
from voxport.runtime.chunking import plan_utterances
from voxport.runtime.codec_stream import CodecStream, codec_rng
from voxport.runtime.contract import FrameContract
from voxport.runtime.engine import END
from voxport.runtime.live_text import LiveText
from voxport.runtime.runtime import Runtime
from voxport.runtime.prompt import Utterance
from voxport.runtime.sampling import Sampling
from voxport.errors import InputError


def parse_chunk_frames(text: str, what: str = "chunk frames") -> tuple[int, ...]:
    """'1,4' -> (1, 4): a chunk schedule as people type it (the CLI, the benchmarks); InputError naming
    `what` for anything but frame counts >= 1 separated by commas."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isascii() and p.isdigit() and int(p) >= 1 for p in parts):
        raise InputError(f"{what} must be frame counts >= 1 separated by commas (e.g. 1,4), got {text!r}")
    return tuple(int(p) for p in parts)


@dataclass
class Speech:
    """One request. Iterate it for float32 PCM chunks; `codes` and `stats` fill in as it goes.
    A consumer that stops early (closes the iterator, breaks out of the loop) ends generation; so does
    setting `cancel` (a threading.Event, for a consumer in another thread), checked before every frame.
    `sentences`, when given, replaces `text`: utterances as they come (the iterator may block, e.g. on
    a live text stream), spoken in order with one codec stream and each as the next one's context. An
    utterance may be a LiveText still being written: where the contract feeds text per frame it is
    spoken as far as its text is final (pausing when the frames outrun it), elsewhere once complete.
    With `engine` (runtime/engine.py), each utterance's frames are one row of that engine's batched
    calls instead of a loop of its own; the codes and audio are the same, and the codec still runs
    here, in the consumer's thread."""

    rt: Runtime
    text: str
    speaker: int | str | None = None  # None: the model's first speaker
    context: list[Utterance] = field(default_factory=list)
    language: str | None = None  # where the prompt format takes one (None: auto)
    instruct: str | None = None  # where the model takes a style instruction
    max_frames: int | None = None  # per utterance; None: the model's (manifest generation.defaults)
    sampling: Sampling = Sampling()
    seed: int = 0
    # frames per codec call: an int, or a schedule (the i-th chunk of an utterance has schedule[i] frames,
    # the last repeating: a small first chunk for early audio, larger ones for throughput); None: the
    # manifest's `codec_stream.chunk_schedule` (1 frame each where an artifact names none)
    chunk_frames: int | tuple | list | None = None
    cancel: object | None = None  # anything with is_set(): threading.Event
    sentences: Iterable[str] | None = None
    # a runtime/engine.py Engine of the same runtime: frames made in its batched calls (same codes)
    engine: object | None = None
    codes: list[np.ndarray] = field(default_factory=list)  # every generated frame, eos frames included
    utterances: list[dict] = field(default_factory=list)  # per utterance: text, first frame, frames
    stats: dict = field(default_factory=dict)
    # wall time of every frame call (the first of an utterance includes its prompt) and codec call
    timings: dict = field(default_factory=lambda: {"frame_s": [], "codec_s": []})

    def __iter__(self):
        if self.chunk_frames is None:
            self.chunk_frames = tuple(self.rt.rt["codec_stream"].get("chunk_schedule", [1]))
        self.schedule = (self.chunk_frames,) if isinstance(self.chunk_frames, int) else tuple(self.chunk_frames)
        if not self.schedule or any(not isinstance(n, int) or n < 1 for n in self.schedule):
            raise InputError(f"chunk size must be >= 1 frame, got {self.chunk_frames}")
        self.contract = FrameContract(self.rt.rt)
        self.max_frames = self.contract.max_frames(self.max_frames)
        self.contract.sampling_feeds(self.sampling)  # checks the settings against every group
        if self.speaker is None:
            self.speaker = self.rt.default_speaker
        self.check_fits()
        return self._run()

    def check_fits(self) -> None:
        """InputError, before any generation, when no text could be spoken: `max_frames` does not fit
        in the context beside the shortest prompt (the caller's context, e.g. a reference voice, and one
        word), or that prompt alone fills it. Says which, with the numbers."""
        if self.speaker is None:
            self.speaker = self.rt.default_speaker
        contract = FrameContract(self.rt.rt)
        self.max_frames = contract.max_frames(self.max_frames)
        limit, steps = self.rt.rt["max_positions"], contract.steps  # a frame takes `steps` positions
        shortest = self._tokens([*self.context, self._utterance("a")])
        ref = ""
        if self.context:  # the reference's share: the shortest prompt with it less without it
            try:
                share = shortest - self._tokens([self._utterance("a")])
                ref = f" ({share} of them the reference: its transcript and audio)"
            except InputError:  # a format that speaks only with a reference
                ref = " (the reference's transcript and audio included)"
        if shortest + 1 > limit:
            raise InputError(f"the prompt alone takes {shortest} of this model's {limit} context positions{ref}; "
                             "shorten the reference clip or its transcript")
        if shortest + self.max_frames * steps > limit:
            raise InputError(f"max_frames {self.max_frames} does not fit: this model's context is {limit} positions "
                             f"and the shortest prompt takes {shortest}{ref}; at most {(limit - shortest) // steps} "
                             "frames fit")

    def _tokens(self, turns: list[Utterance]) -> int:
        return self.rt.prompts.build(turns)[0].shape[1]

    def _run(self):
        rt, t0 = self.rt, time.perf_counter()
        timer = {"prefill_s": 0.0, "frames_s": 0.0, "codec_s": 0.0}
        calls = {"embed": 0, "frame": 0}
        codec, rng = CodecStream(rt.graphs, rng=codec_rng(self.seed)), np.random.default_rng(self.seed)
        samples, first_audio = 0, None
        self.stats = {"stages": timer}
        codecs = self.engine.codecs if self.engine is not None else None  # the engine's batched codec calls

        def decode(chunk):
            # until its first audio a stream decodes in its own thread: a newcomer's first chunk does not
            # wait for a call carrying the others' chunks (the first byte); the same audio either way
            return codecs.decode(codec, chunk) if codecs and first_audio is not None else codec.decode(chunk)

        def emit(pending):
            """Decode `pending` (none: flush the codec) and yield its audio, if any: a codec that looks
            ahead returns nothing for its first frames, and no chunk is empty."""
            nonlocal samples, first_audio
            t = time.perf_counter()
            pcm = decode(np.stack(pending)) if pending else codec.flush(decode)
            self.timings["codec_s"].append(time.perf_counter() - t)
            timer["codec_s"] += self.timings["codec_s"][-1]
            samples += pcm.shape[0]
            if pcm.shape[0]:
                first_audio = first_audio or time.perf_counter() - t0
            self._update(t0, timer, calls, codec.calls, samples, first_audio)
            if pcm.shape[0]:
                yield pcm

        try:
            context = list(self.context)
            for text in self._plan():
                context = self._fit_context(text, context) if isinstance(text, str) else context
                start, pending, chunk = len(self.codes), [], 0
                for frame in self._frames(text, context, rng, timer, calls):
                    self.codes.append(frame)
                    if self._is_eos(frame):
                        break
                    pending.append(frame)
                    if len(pending) == self.schedule[min(chunk, len(self.schedule) - 1)]:
                        yield from emit(pending)
                        pending, chunk = [], chunk + 1
                if pending and not self._cancelled():
                    yield from emit(pending)
                spoken = np.stack(self.codes[start:]) if len(self.codes) > start else np.zeros((0, 1), np.int64)
                spoken = spoken[: len(spoken) - int(len(spoken) > 0 and self._is_eos(spoken[-1]))]
                text = str(text)  # a LiveText: its text as far as it was written
                self.utterances.append({"text": text, "first_frame": start, "frames": int(len(spoken))})
                if self._cancelled():
                    return
                if self.rt.prompts.carries_context:
                    context = [self._utterance(text, spoken)] if len(spoken) else []
            if codec.delay and not self._cancelled():  # the audio a look-ahead codec still holds
                yield from emit([])
        finally:
            self._update(t0, timer, calls, codec.calls, samples, first_audio)

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _is_eos(self, frame: np.ndarray) -> bool:
        # the manifest's stop rule; the stop frame is kept in `codes` but is not audio
        return self.contract.is_stop(frame)

    def _plan(self) -> Iterable[str]:
        if self.sentences is not None:  # lazily: the source may still be being written
            return (part for s in self.sentences for part in self._parts(s))
        return self._split(self.text)

    def _parts(self, sentence: str | LiveText) -> list:
        if isinstance(sentence, LiveText):
            if self.contract.text_per_frame:
                return [sentence]  # spoken as it is written, never split: its prompt does not grow with it
            sentence = sentence.wait_closed(self._cancelled)
            if sentence is None:
                return []
        return self._split(sentence)

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
        half, word = limit // 2, text.split()[0]
        if tokens(word) + frames > half:  # not the text's fault: no piece of it could fit
            raise InputError(f"the text needs more than one utterance, and then each piece gets half of the "
                             f"{limit} context positions left ({half}); max_frames {self.max_frames} and the "
                             f"prompt of even one word ({tokens(word)}) do not fit in that: lower max_frames to at "
                             f"most {max((half - tokens(word)) // self.contract.steps, 0)}, or shorten the text")
        return plan_utterances(text, lambda t: tokens(t) + frames <= half)

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
        """Frame codes from the fused graph: embed the prompt once, then one call per frame (alone, or
        one row of the engine's batched calls)."""
        c = self.contract
        t = time.perf_counter()
        live = text if isinstance(text, LiveText) else None
        if live is None:
            prepared, closed, seen = self.rt.prepare([*context, self._utterance(text)], self.max_frames,
                                                     self.sampling), True, None
        else:
            prepared, seen, closed = self._live_prompt(live, context)
            if prepared is None:
                return
            t = time.perf_counter()  # the wait for text is not the prompt's time
        lane = Lane(self.rt, prepared, self.sampling, rng, self._cancelled, closed)
        calls["embed"] += 1
        text_state = {"live": live, "context": context, "seen": seen, "known": prepared.trailing}
        if self.engine is not None:
            yield from self._engine_frames(lane, text_state, timer, calls, t)
            return
        # the prompt and each frame's steps enter the cache
        cache = c.new_cache(1, prepared.tokens + prepared.max_frames * c.steps)
        session = self.rt.graphs.session(c.graph)
        while not lane.done:
            if self._cancelled():
                return
            while not lane.ready():  # the frames caught up with the text: pause for more
                if not self._more_text(lane, text_state, lane.extend):
                    return
                t = time.perf_counter()
            codes, next_embeds = c.run(session, {**lane.feeds(), c.cache["lengths"]: cache.lengths}, cache)
            calls["frame"] += 1
            cache.lengths += c.advance(lane.embeds.shape[1])
            lane.advance(codes[0], next_embeds)
            self._timed(timer, t, lane.frames)
            yield codes[0]
            t = time.perf_counter()

    def _engine_frames(self, lane: Lane, text_state: dict, timer, calls, t):
        """The lane's frames as the engine makes them (its thread runs the calls; this one waits)."""
        engine = self.engine
        while not lane.ready():  # the first frame needs its text too
            if not self._more_text(lane, text_state, lane.extend):
                return
            t = time.perf_counter()
        # the prompt runs here, beside the engine's steps for the others; the engine copies its cache in
        first = lane.prefill(self.rt.graphs.session(self.contract.graph))
        calls["frame"] += 1
        self._timed(timer, t, 1)
        if lane.done is not None:  # its first frame was its last
            yield first
            return
        made = 1  # frames taken (the engine may be ahead: `lane.frames`)
        try:
            # the first frame's audio goes out before the lane joins (as alone): its decode does not
            # compete with the lane's next frame call for the first byte
            yield first
            engine.submit(lane)
            t = time.perf_counter()
            while True:
                item = lane.inbox.get()
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, str) and item == END:
                    return
                if isinstance(item, str):  # NEED_TEXT: the engine skips this lane until there is more
                    if not self._more_text(lane, text_state, lambda more, closed: engine.extend(lane, more, closed)):
                        return
                    t = time.perf_counter()
                    continue
                if self._cancelled():  # frames the engine made before the cancel are dropped, as alone
                    return
                calls["frame"] += 1
                made += 1
                self._timed(timer, t, made)
                yield item
                t = time.perf_counter()
        finally:  # closed early or cancelled: the engine drops the lane at its next frame boundary
            if lane.done is None:
                lane.cancelled = lambda: True
                engine.wake()

    def _timed(self, timer, t, frames):
        self.timings["frame_s"].append(time.perf_counter() - t)
        timer["prefill_s" if frames == 1 else "frames_s"] += self.timings["frame_s"][-1]

    def _more_text(self, lane: Lane, state: dict, extend) -> bool:
        """Wait for the live text to grow past what the lane has; hand the new per-frame text to
        `extend`. False when cancelled."""
        more, state["seen"], closed = self._live_prompt(state["live"], state["context"], state["seen"])
        if more is None:
            return False
        known = state["known"]
        if not np.array_equal(more.trailing[:len(known)], known):
            raise InputError("the text being written changed words already spoken; send only additions")
        extend(self.rt.embed_trailing(more.trailing[len(known):]), closed)
        state["known"] = more.trailing
        return True

    def _live_prompt(self, live: LiveText, context, seen: str | None = None):
        """(prepared, text seen, closed) once the text differs from `seen` and fixes the prompt, with the
        trailing ids final so far; (None, ...) when cancelled."""
        while True:
            text, closed = live.read() if seen is None else live.wait(seen, self._cancelled)
            if self._cancelled():
                return None, text, closed
            stable = text if closed else self.rt.prompts.stable(text)
            prepared = self.rt.prepare([*context, self._utterance(stable)], self.max_frames, self.sampling,
                                       final=closed)
            if prepared is not None:
                return prepared, text, closed
            seen = text

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
            "embed_calls": calls["embed"], "codec_calls": codec_calls, "chunk_frames": list(self.schedule),
            "stages": {k: round(v, 4) for k, v in timer.items()},
        })
