"""Continuous batching in a thread: one engine per loaded runtime steps every active utterance.

Callers (`Speech` with `engine=`, one per request, each in its own thread) run a lane's prompt
through the frame graph themselves (`Lane.prefill`, into a cache of its own: the longest call of a
stream stays out of the others' steps, and a newcomer's first frame does not queue behind them),
then (once its first frame has been taken) `submit` it and read its next frames from `lane.inbox`: frame codes as each step makes them,
`NEED_TEXT` when the lane waits for live text (the caller `extend`s it), and `END` (or the
exception that ended it) when it has left. A submitted lane joins at the next frame boundary by a
copy of its prompt's cache into a free slot (in order, when none is free) and leaves at one; a
cancelled lane's slot is free before the next call. The engine thread only runs the batched frame
calls: prompts are embedded and prefilled and audio is decoded in the callers' threads, so a
stream's codec never holds up the frame loop of the others.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

import numpy as np

from voxport.runtime.batch import Lane, Scheduler
from voxport.runtime.codec_stream import CodecStream, decode_rows
from voxport.runtime.runtime import Runtime

log = logging.getLogger("voxport.engine")

NEED_TEXT, END = "need_text", "end"


class Engine:
    def __init__(self, rt: Runtime, slots: int, capacity: int | None = None, batch_codec: bool = True):
        self.sched = Scheduler(rt, slots, capacity)
        # the streams' codec calls batched in a thread of their own (None: each stream decodes its own)
        self.codecs = Codecs(lambda: len(self.sched.lanes)) if batch_codec else None
        self._joins: deque[Lane] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self.steps = self.rows = self.max_rows = self.joined = 0
        self.busy_s = 0.0  # in frame calls (and joins): the rest of the time it waited for work
        self.thread = threading.Thread(target=self._loop, name="voxport-engine", daemon=True)
        self.thread.start()

    def submit(self, lane: Lane) -> None:
        """Queue a ready lane; its frames arrive in `lane.inbox`."""
        self.sched.fits(lane)
        lane.inbox = queue.SimpleQueue()
        lane.asked = False
        lane.deliver = lane.inbox.put
        lane.leave = lambda why: lane.inbox.put(END if isinstance(why, str) else why)
        with self._cond:
            self._joins.append(lane)
            self._cond.notify()

    def extend(self, lane: Lane, per_frame: list[dict], closed: bool) -> None:
        """More of a waiting lane's per-frame text (closed: all of it)."""
        with self._cond:
            lane.extend(per_frame, closed)
            lane.asked = False
            self._cond.notify()

    def wake(self) -> None:
        """Look again now (a lane was cancelled)."""
        with self._cond:
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self.codecs:
            self.codecs.stop()

    def stats(self) -> dict:
        """steps: batched frame calls; rows: streams summed over them (rows / steps: streams per call)."""
        return {"slots": self.sched.cache.slots, "active": len(self.sched.lanes), "steps": self.steps,
                "rows": self.rows, "mean_rows": round(self.rows / self.steps, 2) if self.steps else None,
                "max_rows": self.max_rows, "joins": self.joined, "busy_s": round(self.busy_s, 3),
                **(self.codecs.stats() if self.codecs else {})}

    def _work(self) -> list[Lane]:
        """Under the lock: wait for something to do; the lanes to join now."""
        while not self._stopped:
            for lane in self.sched.lanes:
                if not lane.ready() and not lane.asked and not lane.cancelled():
                    lane.asked = True
                    lane.inbox.put(NEED_TEXT)
            busy = any(lane.ready() or lane.cancelled() or lane.done for lane in self.sched.lanes)
            if busy or (self._joins and len(self.sched.lanes) < self.sched.cache.slots):
                joins = []
                free = self.sched.cache.slots - len(self.sched.lanes)
                while self._joins and len(joins) < free:
                    joins.append(self._joins.popleft())
                return joins
            # idle, or every lane waits for text: a cancel is seen within 50 ms even unannounced
            self._cond.wait(0.05 if self.sched.lanes or self._joins else None)
        return []

    def _loop(self) -> None:
        while True:
            with self._cond:
                self.sched.evict()  # cancelled lanes free their slots before newcomers look for one
                joins = self._work()
                if self._stopped:
                    stopped = RuntimeError("the engine stopped")
                    self.sched.fail(stopped)
                    while self._joins:
                        self._joins.popleft().leave(stopped)
                    return
            t = time.perf_counter()
            try:
                for lane in joins:
                    if lane.cancelled():
                        lane.leave("cancel")
                        continue
                    self.sched.join(lane)
                    self.joined += 1
                calls = len(self.sched.timings)
                self.sched.step()
                if len(self.sched.timings) > calls:
                    rows = self.sched.timings[-1][0]
                    self.steps, self.rows, self.max_rows = self.steps + 1, self.rows + rows, max(self.max_rows, rows)
                    del self.sched.timings[:-1]
            except Exception as e:  # noqa: BLE001 - every lane in flight gets it; the engine goes on
                log.exception("frame call failed")
                for lane in joins:
                    if lane not in self.sched.lanes and lane.done is None:
                        lane.leave(e)
                self.sched.fail(e)
            self.busy_s += time.perf_counter() - t


class Codecs:
    """The codec of many streams in one thread: each stream's thread hands its chunk in (`decode`, which
    blocks until its audio is made) and the thread decodes every chunk pending at once, one call per
    chunk length (codec_stream.decode_rows: each stream a row). One thread, so 4 streams are one codec
    call beside the frame call instead of 4 calls fighting it for the cores. After a chunk arrives it
    waits up to `gather_s` for the others of the same frame step (the engine hands a step's frames out
    together), at most until `expect()` chunks are in."""

    def __init__(self, expect, gather_s: float = 0.003):
        self.expect, self.gather_s = expect, gather_s
        self._pending: list[tuple[CodecStream, np.ndarray, dict]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self.calls = self.rows = 0
        self.thread = threading.Thread(target=self._loop, name="voxport-codec", daemon=True)
        self.thread.start()

    def decode(self, stream: CodecStream, codes: np.ndarray) -> np.ndarray:
        job = {"done": threading.Event()}
        with self._cond:
            if self._stopped:
                raise RuntimeError("the engine stopped")
            self._pending.append((stream, codes, job))
            self._cond.notify()
        job["done"].wait()
        if "error" in job:
            raise job["error"]
        return job["audio"]

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def stats(self) -> dict:
        return {"codec_calls": self.calls, "codec_rows": self.rows}

    def _take(self) -> list | None:
        with self._cond:
            while not self._pending and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            until = time.perf_counter() + self.gather_s
            while len(self._pending) < self.expect() and (left := until - time.perf_counter()) > 0:
                self._cond.wait(left)
            jobs, self._pending = self._pending, []
            return jobs

    def _loop(self) -> None:
        while (jobs := self._take()) is not None:
            by_length: dict[int, list] = {}
            for job in jobs:
                by_length.setdefault(job[1].shape[0], []).append(job)
            for group in by_length.values():
                try:
                    audio = decode_rows([j[0] for j in group], [j[1] for j in group])
                    for (_, _, job), pcm in zip(group, audio):
                        job["audio"] = pcm
                except Exception as e:  # noqa: BLE001 - each stream in the call gets it
                    for _, _, job in group:
                        job["error"] = e
                self.calls, self.rows = self.calls + 1, self.rows + len(group)
                for _, _, job in group:
                    job["done"].set()
        with self._cond:  # stopped: nobody waits forever
            for _, _, job in self._pending:
                job["error"] = RuntimeError("the engine stopped")
                job["done"].set()
