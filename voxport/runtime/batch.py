"""Many streams, one frame call per step: a scheduler over the frame graph's static KV cache.

A `Lane` is one utterance's frame loop (its prompt embeddings, sampling settings, noise generator,
logits-processor state and per-frame text); `Speech` runs one alone, the `Scheduler` runs many.
Each lane owns a slot (a row of the cache buffers, runtime/kv.py) from the frame it joins to the
frame it leaves. It joins at a frame boundary: its prompt is prefilled into the next free slot by
the frame graph run over that slot alone (that call gives its first frame, as a stream alone has).
Then every step is one call for every ready lane, each row with its own settings. A lane is not
ready while its per-frame text has not been written yet (live text, runtime/live_text.py): it keeps
its slot, and its row moves behind the ready ones for the steps it sits out. A lane leaves at a frame
boundary (the contract's stop rule, its frame limit, or cancel); the last row moves into its slot,
so the rows stepped are always rows [0, n) of the buffers (a contiguous view bound in place).

Exactness: a stream's codes in a batch are those it has alone with the same seed (its own noise
and settings per row; tests/test_batch.py), since every row's arithmetic is its own.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from voxport.errors import InputError
from voxport.runtime.codec_stream import CodecStream, codec_rng
from voxport.runtime.prompt import Utterance
from voxport.runtime.runtime import Prepared, Runtime
from voxport.runtime.sampling import Sampling


class Lane:
    """One utterance's frame loop state, the same whether it runs alone or in a batch: `feeds()` for
    its next frame call (drawing that frame's noise), `advance()` with the call's outputs. `deliver`
    gets every frame's codes; `leave` the reason it left ("stop", "frames", "cancel" or an exception)."""

    def __init__(self, rt: Runtime, prepared: Prepared, sampling: Sampling, rng: np.random.Generator,
                 cancelled: Callable[[], bool] = lambda: False, closed: bool = True,
                 deliver: Callable = lambda frame: None, leave: Callable = lambda why: None):
        c = self.c = rt.contract
        self.max_frames, self.tokens = prepared.max_frames, prepared.tokens
        self.embeds, self.per_frame = rt.embed(prepared)
        self.sampling, self.logits, self.rng = c.sampling_feeds(sampling), c.logits_state(sampling), rng
        self.closed = closed  # the text is complete (False: live text, per_frame grows with it)
        self.cancelled, self.deliver, self.leave = cancelled, deliver, leave
        self.frames, self.done = 0, None
        self.prefilled = None  # its prompt's cache, when prefilled apart (`prefill`)

    def prefill(self, session) -> np.ndarray:
        """Run the prompt through the frame graph into a cache of its own (the caller's thread, beside
        the engine's calls); `Scheduler.join` copies that cache into the lane's slot. The first frame."""
        self.prefilled = self.c.new_cache(1, self.c.advance(self.tokens))
        codes, embeds = self.c.run(session, {**self.feeds(), self.c.cache["lengths"]: self.prefilled.lengths},
                                   self.prefilled)
        self.prefilled.lengths += self.c.advance(self.embeds.shape[1])
        self.advance(codes[0], embeds)
        return codes[0]

    def ready(self) -> bool:
        """Frame n needs the n-th per-frame text, unless the text is complete (the last repeats)."""
        return self.closed or self.frames < len(self.per_frame)

    def extend(self, per_frame: list[dict], closed: bool) -> None:
        self.per_frame += per_frame  # before `closed`: a reader never sees closed without the entries
        self.closed = closed

    def feeds(self) -> dict[str, np.ndarray]:
        """The next frame call's inputs but the cache's (one row)."""
        c, n = self.c, self.frames
        extra = {**self.per_frame[min(n, len(self.per_frame) - 1)], **(self.logits.feeds() if self.logits else {})}
        return {**self.sampling, c.noise: c.draw_noise(self.rng), **extra, c.embeds_in: self.embeds}

    def advance(self, frame: np.ndarray, next_embeds: np.ndarray) -> None:
        self.frames += 1
        self.embeds = next_embeds
        if self.logits:
            self.logits.update(frame)
        if self.c.is_stop(frame):
            self.done = "stop"
        elif self.frames >= self.max_frames:
            self.done = "frames"
        self.deliver(frame)


class Scheduler:
    """`slots` lanes at most, each up to `capacity` positions (default: the model's)."""

    def __init__(self, rt: Runtime, slots: int, capacity: int | None = None):
        if slots < 1:
            raise InputError(f"slots must be >= 1, got {slots}")
        self.rt, self.c = rt, rt.contract
        self.session = rt.graphs.session(self.c.graph)
        self.cache = self.c.new_cache(slots, capacity or self.c.capacity)
        self.lanes: list[Lane] = []  # lane i holds slot i
        self.timings: list[tuple[int, float]] = []  # (rows, seconds) of each batched step

    @property
    def free(self) -> int:
        return self.cache.slots - len(self.lanes)

    def fits(self, lane: Lane) -> None:
        need = lane.tokens + lane.max_frames * self.c.steps  # a frame takes `steps` positions
        if need > self.cache.capacity:
            raise InputError(f"prompt ({lane.tokens} positions) and {lane.max_frames} frames of {self.c.steps} "
                             f"positions do not fit a slot of {self.cache.capacity} positions")

    def join(self, lane: Lane | BatchStream) -> None:
        """Prefill `lane` (ready; a BatchStream's own) into the next free slot, its first frame generated
        here; or, when it was prefilled apart (`Lane.prefill`), copy that cache into the slot (no call)."""
        if not self.free:
            raise InputError("no free slot")
        if isinstance(lane, BatchStream):
            lane = lane.lane(self.rt)
        self.fits(lane)
        slot = len(self.lanes)
        self.cache.lengths[slot] = 0
        self.lanes.append(lane)
        if lane.prefilled is not None:
            self.cache.load(slot, lane.prefilled)
            lane.prefilled = None
            return
        codes, embeds = self.c.run(self.session, {**lane.feeds(), self.c.cache["lengths"]: self.cache.lengths[slot:slot + 1]},
                                   self.cache, slot, slot + 1)
        self.cache.lengths[slot] += self.c.advance(lane.embeds.shape[1])
        lane.advance(codes[0], embeds[0:1])

    def evict(self) -> list[Lane]:
        """Lanes that are done or cancelled leave (their slots are free after this)."""
        left = [lane for lane in self.lanes if lane.done or lane.cancelled()]
        for lane in left:
            self._leave(lane, lane.done or "cancel")
        return left

    def step(self) -> list[Lane]:
        """Lanes that are done or asked to cancel leave; then one frame call for every ready lane.
        Returns the lanes that left in this step."""
        left = self.evict()
        n = self._ready_first()
        if n == 0:
            return left
        rows = [lane.feeds() for lane in self.lanes[:n]]
        feeds = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        feeds[self.c.cache["lengths"]] = self.cache.lengths[:n]
        t = time.perf_counter()
        codes, embeds = self.c.run(self.session, feeds, self.cache, 0, n)
        self.timings.append((n, time.perf_counter() - t))
        self.cache.lengths[:n] += self.c.advance(1)
        for i, lane in enumerate(self.lanes[:n]):
            lane.advance(codes[i], embeds[i:i + 1])
        return left + self.evict()

    def run(self, streams: list[BatchStream]) -> None:
        """Every stream to its end: each joins when a slot is free (in order)."""
        waiting = [s.lane(self.rt) for s in streams]
        while waiting or self.lanes:
            self.evict()
            while waiting and self.free:
                self.join(waiting.pop(0))
            self.step()

    def fail(self, error: BaseException) -> None:
        """A frame call failed: every lane leaves with the error (the cache rows are free again)."""
        for lane in list(self.lanes):
            self._leave(lane, error)

    def _ready_first(self) -> int:
        """Rows of ready lanes first (swapping caches with waiting ones); how many are ready."""
        ready = [lane.ready() for lane in self.lanes]
        i, j = 0, len(self.lanes) - 1
        while True:
            while i < j and ready[i]:
                i += 1
            while i < j and not ready[j]:
                j -= 1
            if i >= j:
                return sum(ready)
            self.cache.swap(i, j)
            self.lanes[i], self.lanes[j] = self.lanes[j], self.lanes[i]
            ready[i], ready[j] = True, False

    def _leave(self, lane: Lane, why) -> None:
        lane.done = why
        slot, last = self.lanes.index(lane), len(self.lanes) - 1
        if slot != last:  # the last row fills the hole: active rows stay first
            self.cache.move(last, slot)
            self.lanes[slot] = self.lanes[last]
        self.lanes.pop()
        self.cache.lengths[last] = 0
        lane.leave(why)


@dataclass
class BatchStream:
    """One single-utterance request for `Scheduler.run` (tests, scripts): its text and settings.
    `codes` fills in frame by frame (the stop frame included, as Speech keeps it); `pcm` collects
    audio chunks when decoding. max_frames None: the model's (manifest generation.defaults)."""

    text: str
    speaker: int | str | None = None
    max_frames: int | None = None
    sampling: Sampling = Sampling()
    seed: int = 0
    chunk_frames: int = 1
    decode: bool = False
    codes: list = field(default_factory=list)
    pcm: list = field(default_factory=list)
    done: str | None = None  # why it left: "stop", "frames", "cancel"
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()

    def lane(self, rt: Runtime) -> Lane:
        speaker = rt.default_speaker if self.speaker is None else self.speaker
        prepared = rt.prepare([Utterance(self.text, speaker)], rt.contract.max_frames(self.max_frames), self.sampling)
        codec, pending = (CodecStream(rt.graphs, rng=codec_rng(self.seed)) if self.decode else None), []

        def deliver(frame):
            self.codes.append(frame)
            stop = rt.contract.is_stop(frame)
            if codec and not stop:
                pending.append(frame)
            end, chunks = stop or len(self.codes) >= prepared.max_frames, []
            if codec and pending and (len(pending) == self.chunk_frames or end):
                chunks.append(codec.decode(np.stack(pending)))
                pending.clear()
            if codec and end:  # the audio a look-ahead codec still holds
                chunks.append(codec.flush())
            self.pcm.extend(pcm for pcm in chunks if pcm.shape[0])  # a look-ahead codec's first calls give none

        def leave(why):
            self.done = why if isinstance(why, str) else "error"

        return Lane(rt, prepared, self.sampling, np.random.default_rng(self.seed), self.cancelled.is_set,
                    deliver=deliver, leave=leave)

