"""Many streams, one frame call per step: a scheduler over the frame graph's static KV cache.

Each stream owns a slot (a row of the cache buffers, runtime/kv.py) from the frame it joins to the
frame it leaves. It joins at a frame boundary: its prompt is prefilled into the next free slot by
the frame graph run over that slot alone (that call gives its first frame, as a stream alone has).
Then every step is one call for every active stream, each row with its own sampling settings,
noise generator, logits-processor state, per-frame text and codec stream. A stream leaves at a
frame boundary (the contract's stop rule, its frame limit, or cancel); the last active row moves
into its slot, so the active rows stay rows [0, n) of the buffers (a contiguous view bound in place).

Exactness: a stream's codes in a batch are those it has alone with the same seed (its own noise
and settings per row; tests/test_batch.py), since every row's arithmetic is its own.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from voxport.errors import InputError
from voxport.runtime.codec_stream import CodecStream, codec_rng
from voxport.runtime.prompt import Utterance
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling


@dataclass
class BatchStream:
    """One request in a batch: an utterance and its settings. `codes` fills in frame by frame (the stop
    frame included, as Speech keeps it); `pcm` collects audio chunks when decoding."""

    text: str
    speaker: int | str | None = None
    max_frames: int = 125
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


class _Lane:
    """A stream's state while it holds a slot."""

    def __init__(self, rt: Runtime, s: BatchStream):
        c = rt.contract
        speaker = rt.default_speaker if s.speaker is None else s.speaker
        self.prepared = rt.prepare([Utterance(s.text, speaker)], s.max_frames, s.sampling)
        self.embeds, self.per_frame = rt.embed(self.prepared)
        self.stream, self.rng = s, np.random.default_rng(s.seed)
        self.sampling, self.logits = c.sampling_feeds(s.sampling), c.logits_state(s.sampling)
        self.codec = CodecStream(rt.graphs, rng=codec_rng(s.seed)) if s.decode else None
        self.pending: list = []

    def feeds(self, contract) -> dict[str, np.ndarray]:
        n = len(self.stream.codes)
        extra = {**self.per_frame[min(n, len(self.per_frame) - 1)], **(self.logits.feeds() if self.logits else {})}
        return {**self.sampling, contract.noise: contract.draw_noise(self.rng), **extra,
                contract.embeds_in: self.embeds}


class Scheduler:
    """`slots` streams at most, each up to `capacity` positions (default: the model's)."""

    def __init__(self, rt: Runtime, slots: int, capacity: int | None = None):
        if slots < 1:
            raise InputError(f"slots must be >= 1, got {slots}")
        self.rt, self.c = rt, rt.contract
        self.session = rt.graphs.session(self.c.graph)
        self.cache = self.c.new_cache(slots, capacity or self.c.capacity)
        self.lanes: list[_Lane] = []  # lane i holds slot i
        self.timings: list[tuple[int, float]] = []  # (rows, seconds) of each batched step

    @property
    def free(self) -> int:
        return self.cache.slots - len(self.lanes)

    def join(self, s: BatchStream) -> None:
        """Prefill `s` into the next free slot (its first frame is generated here)."""
        if not self.free:
            raise InputError("no free slot")
        lane = _Lane(self.rt, s)
        need = lane.prepared.tokens + lane.prepared.max_frames * self.c.steps  # a frame takes `steps` positions
        if need > self.cache.capacity:
            raise InputError(f"prompt ({lane.prepared.tokens} positions) and {lane.prepared.max_frames} frames of "
                             f"{self.c.steps} positions do not fit a slot of {self.cache.capacity} positions")
        slot = len(self.lanes)
        self.cache.lengths[slot] = 0
        feeds = lane.feeds(self.c)
        codes, embeds = self.c.run(self.session, {**feeds, self.c.cache["lengths"]: self.cache.lengths[slot:slot + 1]},
                                   self.cache, slot, slot + 1)
        self.cache.lengths[slot] += self.c.advance(lane.embeds.shape[1])
        self.lanes.append(lane)
        self._advance(lane, codes[0], embeds[0:1])

    def step(self) -> list[BatchStream]:
        """Streams that asked to cancel (or ended on the frame they joined with) leave; then one frame
        call for every active stream. Returns the streams that left in this step."""
        left = [lane for lane in self.lanes if lane.stream.cancelled.is_set() or lane.stream.done]
        for lane in left:
            self._leave(lane, lane.stream.done or "cancel")
        n = len(self.lanes)
        if n == 0:
            return [lane.stream for lane in left]
        rows = [lane.feeds(self.c) for lane in self.lanes]
        feeds = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        feeds[self.c.cache["lengths"]] = self.cache.lengths[:n]
        t = time.perf_counter()
        codes, embeds = self.c.run(self.session, feeds, self.cache, 0, n)
        self.timings.append((n, time.perf_counter() - t))
        self.cache.lengths[:n] += self.c.advance(1)
        for i, lane in enumerate(list(self.lanes)):
            self._advance(lane, codes[i], embeds[i:i + 1])
        for lane in [lane for lane in self.lanes if lane.stream.done]:
            left.append(lane)
            self._leave(lane, lane.stream.done)
        return [lane.stream for lane in left]

    def run(self, streams: list[BatchStream]) -> None:
        """Every stream to its end: each joins when a slot is free (in order)."""
        waiting = list(streams)
        while waiting or self.lanes:
            while waiting and self.free:
                self.join(waiting.pop(0))
            self.step()

    # -- internals --------------------------------------------------------------------------------
    def _advance(self, lane: _Lane, frame: np.ndarray, next_embeds: np.ndarray) -> None:
        s = lane.stream
        s.codes.append(frame)
        lane.embeds = next_embeds
        if lane.logits:
            lane.logits.update(frame)
        stop = self.c.is_stop(frame)
        if lane.codec and not stop:
            lane.pending.append(frame)
        end = stop or len(s.codes) >= lane.prepared.max_frames
        chunks = []
        if lane.codec and lane.pending and (len(lane.pending) == s.chunk_frames or end):
            chunks.append(lane.codec.decode(np.stack(lane.pending)))
            lane.pending = []
        if lane.codec and end:  # the audio a look-ahead codec still holds
            chunks.append(lane.codec.flush())
        s.pcm += [pcm for pcm in chunks if pcm.shape[0]]  # a look-ahead codec's first calls give none
        if stop:
            s.done = "stop"
        elif len(s.codes) >= lane.prepared.max_frames:
            s.done = "frames"

    def _leave(self, lane: _Lane, why: str) -> None:
        lane.stream.done = why
        slot, last = self.lanes.index(lane), len(self.lanes) - 1
        if slot != last:  # the last row fills the hole: active rows stay first
            self.cache.move(last, slot)
            self.lanes[slot] = self.lanes[last]
        self.lanes.pop()
        self.cache.lengths[last] = 0
