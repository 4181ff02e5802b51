"""GET /v1/audio/stream (WebSocket): text in pieces as an LLM writes it, PCM out sentence by sentence.

Client -> server, JSON text messages:
  {"type": "start", "model", "voice", "seed", "temperature", "top_k", "top_p", "max_frames", "codes": bool}
      first message; every field optional (model: the only one served)
  {"type": "text", "text": "..."}   appended; each sentence is spoken as soon as it is complete, or,
                                    where the model takes its text one token per frame (the manifest's
                                    per-frame "trailing_text"), as soon as its first words are final,
                                    pausing when the speech catches up with the text
  {"type": "flush"}                 speak what is left even without a sentence end
  {"type": "cancel"}                stop generating within one frame, drop pending text
Server -> client: binary messages are PCM (s16le, mono, the model's sample rate), in order; JSON:
  {"type": "ready", "model", "sample_rate", "format": "pcm_s16le"}
  {"type": "done", "index", "text", "frames", "samples"[, "codes"]}   per sentence or flush
  {"type": "cancelled", "frames"}   after a cancel: frames made since the last done
  {"type": "error", "error": {"message", "type", "param", "code"}}

One session holds one stream slot from start to close (a client that closes while it waits for one
leaves the queue at once; what it sends meanwhile is kept for its session): its speech keeps state (codec, context)
across sentences. Sentences are one `Speech` fed by a queue, so each is the next one's context and
the codec stream has no join (as `voxport speak` with long text).

Limits (ServerConfig): generation runs at most `ws_queue` chunks ahead of what the client has taken,
then waits for it; a client that takes nothing for `send_timeout` s is dropped (close 1008), and one
that sends nothing for `idle_timeout` s while nothing is being spoken is closed (1001): either way
its slot is freed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from voxport.runtime.audio import pcm16
from voxport.runtime.chunking import check_utf8, complete_sentences
from voxport.runtime.live_text import LiveText
from voxport.api.errors import ApiError, bad
from voxport.api.bodies import parse_json
from voxport.api.slots import take_unless_gone
from voxport.api.speech import check_fits, load_runtime, parse_options
from voxport.errors import InputError

log = logging.getLogger("voxport.serve")

START_FIELDS = {"type", "model", "voice", "seed", "temperature", "top_k", "top_p", "max_frames", "codes"}

class Live:
    """One `Speech` over sentences that arrive later, run in its own thread; what it makes (PCM bytes,
    events) goes to `out` on the event loop, in order."""

    def __init__(self, rt, opts, chunk_frames: int | tuple | None, with_codes: bool, loop, out: asyncio.Queue,
                 engine=None):
        self.inbox: queue.Queue = queue.Queue()
        self.cancel = threading.Event()
        self.loop, self.out, self.with_codes = loop, out, with_codes
        self.texts: list = []  # every sentence given (str or LiveText); reported in order
        self.reported, self.first_frame, self.first_utterance, self.samples = 0, 0, 0, 0
        self.speech = opts.speech(rt, sentences=self._sentences(), cancel=self.cancel, chunk_frames=chunk_frames,
                                  engine=engine)
        self.thread = threading.Thread(target=self._run, name="voxport-live", daemon=True)
        self.thread.start()

    def say(self, text: str | LiveText) -> None:
        self.inbox.put(text)

    def stop(self) -> None:
        self.cancel.set()
        self.inbox.put(None)  # a speech paused for more text sees the cancel within 50 ms

    def _emit(self, item) -> None:
        """Hand `item` to the event loop's bounded queue, waiting while it is full (the client is
        behind): generation goes no faster than the client reads. A stopped session never waits."""
        future = asyncio.run_coroutine_threadsafe(self.out.put(item), self.loop)
        while not self.cancel.is_set():
            try:
                return future.result(timeout=0.1)
            except TimeoutError:
                continue
        future.cancel()

    def _sentences(self):
        while True:
            self._report()  # the speech resumes this once the previous sentence is spoken
            text = self.inbox.get()
            if text is None or self.cancel.is_set():
                return
            self.texts.append(text)
            yield text

    def _report(self) -> None:
        if self.reported == len(self.texts):
            return
        end, utts = len(self.speech.codes), self.speech.utterances[self.first_utterance:]
        event = {"type": "done", "index": self.reported, "text": str(self.texts[self.reported]),
                 "frames": sum(u["frames"] for u in utts), "samples": self.samples}
        if self.with_codes:  # every frame made for it, the eos frame included (as Speech.codes)
            event["codes"] = [c.tolist() for c in self.speech.codes[self.first_frame:end]]
        self._emit(event)
        self.reported += 1
        self.first_frame, self.first_utterance, self.samples = end, len(self.speech.utterances), 0

    def _run(self) -> None:
        try:
            for pcm in self.speech:
                data = pcm16(pcm)
                self.samples += len(data) // 2
                self._emit(data)
            if self.cancel.is_set():
                self._emit({"type": "cancelled", "frames": len(self.speech.codes) - self.first_frame})
        except InputError as e:
            self._emit({"type": "error", **ApiError(400, str(e), "text").body()})
        except Exception as e:  # noqa: BLE001 - reported to the client; the next text starts afresh
            self._emit({"type": "error", **ApiError(500, f"generation failed: {str(e).splitlines()[0][:200]}").body()})


async def stream(websocket: WebSocket) -> None:
    state = websocket.app.state
    await websocket.accept()
    try:
        with anyio.move_on_after(state.config.idle_timeout) as waited:
            start = await _receive(websocket)
        if waited.cancelled_caught:
            await websocket.close(1001, "no start message")
            return
        if start.get("type") != "start":
            raise bad('the first message must be {"type": "start", ...} (every field optional)', "type")
        unknown = sorted(set(start) - START_FIELDS)
        if unknown:
            raise bad(f"unknown start field {unknown[0]!r}; accepted: {', '.join(sorted(START_FIELDS))}", unknown[0])
        body = {k: v for k, v in start.items() if k not in ("type", "codes")}
        if "model" not in body and len(state.models.speakable()) == 1:
            body["model"] = state.models.speakable()[0]
        opts = parse_options(state, body)
        rt = await load_runtime(state, opts)  # a damaged artifact: 500, said once
        check_fits(opts.speech(rt))  # a max_frames that would fail every sentence: refused now
        early: list = []  # what the client sends while it waits for its slot, kept for the session
        slot = await _take_while_open(state.slots, websocket, early)  # the same slots and queue as HTTP
        if slot is None:
            return  # it closed while it waited: its place in the queue went with it
    except ApiError as e:
        await _send_error(websocket, e)
        await websocket.close(1013 if e.status == 503 else 1011 if e.status >= 500 else 1008)
        return
    except WebSocketDisconnect:
        return
    session = Session(websocket, state, opts, bool(start.get("codes")), early)
    try:
        await websocket.send_json({"type": "ready", "model": opts.model, "dtype": opts.dtype,
                                   "sample_rate": rt.rt["sample_rate"], "format": "pcm_s16le"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.forward, tg.cancel_scope)
            await session.run(rt)  # returns when the client goes or idles out
            tg.cancel_scope.cancel()
    finally:  # client gone: stop generating (within one frame), then free the slot
        await session.stop()
        slot.release()


class Session:
    def __init__(self, websocket: WebSocket, state, opts, with_codes: bool, early: list | None = None):
        self.websocket, self.state, self.opts, self.with_codes = websocket, state, opts, with_codes
        self.early = list(early or [])  # messages that came while the session waited for its slot
        self.out: asyncio.Queue = asyncio.Queue(maxsize=state.config.ws_queue)
        self.live: Live | None = None
        self.writing: LiveText | None = None  # the sentence being written, already handed to the speech
        self.last_active = time.monotonic()  # a message in, or something sent out

    def _speaking(self) -> bool:
        live = self.live
        return live is not None and live.thread.is_alive() and (live.reported < len(live.texts)
                                                                or not live.inbox.empty())

    async def _next_message(self) -> dict | None:
        """The client's next message; None once it has been silent for idle_timeout s while nothing
        was being spoken (a session that only sent `start` must not hold its slot forever)."""
        idle = self.state.config.idle_timeout
        while True:
            with anyio.move_on_after(max(0.0, self.last_active + idle - time.monotonic())):
                msg = _parse(self.early.pop(0)) if self.early else await _receive(self.websocket)
                self.last_active = time.monotonic()
                return msg
            if self._speaking():
                self.last_active = time.monotonic()
            elif time.monotonic() - self.last_active >= idle:
                return None

    async def forward(self, scope: anyio.CancelScope) -> None:
        """Send what the generation makes, in order; a client that takes nothing for send_timeout s
        (its buffers full) ends the session."""
        timeout = self.state.config.send_timeout
        while True:
            item = await self.out.get()
            try:
                with anyio.fail_after(timeout):
                    if isinstance(item, bytes):
                        await self.websocket.send_bytes(item)
                    else:
                        await self.websocket.send_json(item)
                self.last_active = time.monotonic()
            except TimeoutError:
                log.warning("WebSocket client stopped reading for %g s; session dropped", timeout)
                scope.cancel()
                return
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the client is gone; the receive side sees it and ends the session

    async def run(self, rt) -> None:
        buffer = ""
        early = rt.contract.text_per_frame  # speak a sentence while it is written
        while True:
            try:
                msg = await self._next_message()
                if msg is None:
                    with anyio.move_on_after(1):
                        await _send_error(self.websocket, ApiError(408, f"no message for "
                                          f"{self.state.config.idle_timeout:g} s; closing", None, "idle_timeout"))
                        await self.websocket.close(1001, "idle")
                    return
                kind = msg.get("type")
                if kind == "text":
                    buffer += _text(msg)
                    if len(buffer) > self.state.config.max_input_chars:
                        buffer = ""
                        raise bad(f"unspoken text is over {self.state.config.max_input_chars} characters; "
                                  "send sentence ends or a flush", "text", "input_too_long")
                    sentences, buffer = complete_sentences(buffer)
                elif kind == "flush":
                    sentences, buffer = ([buffer.strip()] if buffer.strip() else []), ""
                elif kind == "cancel":
                    buffer, sentences, self.writing = "", [], None
                    if self.live is None:  # nothing running: still answer, so a client can always wait for it
                        self.out.put_nowait({"type": "cancelled", "frames": 0})
                    await self.stop()
                else:
                    raise bad(f"unknown message type {kind!r}: text, flush or cancel", "type")
            except ApiError as e:
                await _send_error(self.websocket, e)
                continue
            except WebSocketDisconnect:
                return
            if self.writing is not None and (self.live is None or not self.live.thread.is_alive()):
                self.writing = None  # its speech ended (an error event was sent): what follows starts afresh
            for s in sentences:
                if self.writing is not None:  # its start is being spoken already: now it is complete
                    self.writing.close(s)
                    self.writing = None
                else:
                    self._say(rt, s)
            if early and buffer.strip():
                if self.writing is None:
                    self.writing = LiveText()
                    self._say(rt, self.writing)
                self.writing.set(buffer.lstrip())  # as the complete sentence will read (stripped)

    def _say(self, rt, text) -> None:
        if self.live is None or not self.live.thread.is_alive():
            self.live = Live(rt, self.opts, self.state.config.chunk_frames, self.with_codes,
                             asyncio.get_running_loop(), self.out, self.state.models.engine(self.opts.model, self.opts.dtype))
        self.live.say(text)

    async def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            await anyio.to_thread.run_sync(self.live.thread.join)
            self.live = None


async def _take_while_open(slots, websocket: WebSocket, early: list):
    """A slot, or None when the client closes while it waits. Messages that arrive meanwhile go to
    `early`, in order, for the session."""
    async def gone():
        while (message := await websocket.receive())["type"] != "websocket.disconnect":
            early.append(message)

    return await take_unless_gone(slots, gone)


async def _receive(websocket: WebSocket) -> dict:
    return _parse(await websocket.receive())


def _parse(message: dict) -> dict:
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if not text:
        raise bad("messages are JSON text: {\"type\": \"text\" | \"flush\" | \"cancel\", ...}")
    return parse_json(text.encode("utf-8", "surrogatepass"), "a message")


def _text(msg: dict) -> str:
    text = msg.get("text")
    if not isinstance(text, str):
        raise bad("text messages carry a string: {\"type\": \"text\", \"text\": \"...\"}", "text")
    try:
        return check_utf8(text, "text")
    except InputError as e:
        raise bad(str(e), "text") from None


async def _send_error(websocket: WebSocket, error: ApiError) -> None:
    await websocket.send_json({"type": "error", **error.body()})
