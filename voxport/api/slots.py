"""Admission: how many streams generate at once, and what a request does when all are busy.

`limit` slots; a request that finds every slot busy waits its turn (first come, first served) in a
queue of at most `queue` requests, for at most `wait` seconds, and only then is refused (503 with
Retry-After). HTTP requests and WebSocket sessions take from the same slots and the same queue.

The surface is three calls, so a scheduler that batches streams can sit behind it unchanged:
`await slots.take()` -> Slot, `slot.release()` (idempotent, from any thread), `slots.stats()`.
Everything else runs on the event loop's thread, so no lock is needed."""

from __future__ import annotations

import asyncio
from collections import deque

import anyio

from voxport.api.errors import ApiError


class Slots:
    def __init__(self, limit: int, queue: int = 0, wait: float = 0.0):
        self.limit, self.queue, self.wait = limit, queue, wait
        self.active = 0
        self.started = self.refused = self.timed_out = 0
        self.longest_wait = 0.0  # seconds, of a request that got its slot after waiting
        self._waiters: deque[asyncio.Future] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def stats(self) -> dict:
        return {"active": self.active, "max": self.limit, "waiting": len(self._waiters), "max_queue": self.queue,
                "started": self.started, "refused": self.refused, "timed_out": self.timed_out,
                "longest_wait_s": round(self.longest_wait, 3)}

    async def take(self) -> "Slot":
        self._loop = loop = asyncio.get_running_loop()
        if self.active < self.limit and not self._waiters:
            self.active += 1
            self.started += 1
            return Slot(self)
        if len(self._waiters) >= self.queue:
            self.refused += 1
            raise self._busy(f"all {self.limit} streams are busy and " +
                             (f"{self.queue} requests already wait" if self.queue else "no request may wait"))
        turn, t0 = loop.create_future(), loop.time()
        self._waiters.append(turn)
        try:
            await asyncio.wait({turn}, timeout=self.wait)
        except BaseException:  # the waiting task itself was cancelled: a slot handed to it goes back
            self._leave(turn)
            raise
        if not turn.done():
            self._leave(turn)
            self.refused += 1
            self.timed_out += 1
            raise self._busy(f"all {self.limit} streams stayed busy for {self.wait:g} s")
        self.longest_wait = max(self.longest_wait, loop.time() - t0)
        return Slot(self)

    def _busy(self, why: str) -> ApiError:
        return ApiError(503, f"{why}; retry shortly", None, "server_busy", headers={"Retry-After": "1"})

    def _leave(self, turn: asyncio.Future) -> None:
        if turn.done() and not turn.cancelled():
            self._give_back()  # it was handed this slot in the meantime
        else:
            turn.cancel()
            if turn in self._waiters:
                self._waiters.remove(turn)

    def _give_back(self) -> None:
        while self._waiters:  # straight to the longest waiter: `active` stays the same
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                self.started += 1
                return
        self.active -= 1

    def _release(self) -> None:
        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            here = False
        if here or self._loop is None:
            self._give_back()
        else:  # a worker thread's cleanup: the count and the queue are the loop's
            self._loop.call_soon_threadsafe(self._give_back)


class Slot:
    def __init__(self, slots: Slots):
        self._slots, self._held = slots, True

    def release(self) -> None:
        if self._held:  # idempotent: every exit path may call it
            self._held = False
            self._slots._release()


async def take_unless_gone(slots: Slots, gone):
    """A slot, or None when the client leaves while it waits: `gone` is an async function that returns
    once it has, and the waiting `take` is then cancelled, so the waiter leaves the queue (one nobody
    listens to must not hold a place). HTTP requests and WebSocket sessions differ only in `gone`."""
    got, refused = None, None
    async with anyio.create_task_group() as tg:
        async def watch():
            await gone()
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            got = await slots.take()
        except ApiError as e:  # raised here it would leave the group wrapped in an ExceptionGroup
            refused = e
        tg.cancel_scope.cancel()
    if refused is not None:
        raise refused
    return got
