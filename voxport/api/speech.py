"""POST /v1/audio/speech (OpenAI's request shape, audio streamed as it is made) and GET /v1/models."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from voxport.runtime.chunking import check_utf8
from voxport.runtime.contract import FrameContract
from voxport.runtime.runtime import speakers, takes_voice_prompts
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech
from voxport.api.bodies import read_json
from voxport.api.encode import Encoder, formats, media_type
from voxport.api.errors import ApiError, bad
from voxport.api.slots import take_unless_gone
from voxport.api.voices import NAME as VOICE_NAME
from voxport.errors import InputError, VoxportError

log = logging.getLogger("voxport.serve")

# absent: the model's own (the manifest's generation contract, resolved by the runtime), as `voxport speak`
DEFAULTS = {"temperature": None, "top_k": None, "seed": 0, "max_frames": None}
KNOWN = {"model", "input", "voice", "response_format", "speed", "stream_format", "instructions", "top_p", *DEFAULTS}


@dataclass
class Options:
    """What one generation needs besides its text; checked before a slot is taken."""

    model: str
    dtype: str
    speaker: int | str | None
    context: list
    sampling: Sampling
    seed: int
    max_frames: int
    instruct: str | None = None

    def speech(self, rt, text: str | None = None, **kw) -> Speech:
        return Speech(rt, text or "", speaker=self.speaker, context=list(self.context), max_frames=self.max_frames,
                      sampling=self.sampling, seed=self.seed, instruct=self.instruct, **kw)


def _number(body: dict, key: str, kind, low, high):
    value = body[key] if key in body else DEFAULTS[key]
    if value is None and key not in body:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and int(value) != value):
        raise bad(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}", key)
    if not low <= value <= high:
        raise bad(f"{key} must be between {low} and {high}, got {value}", key)
    return kind(value)


def _top_p(body: dict) -> float | None:
    """None (absent): the model's own top-p per sampling group, as `voxport speak`."""
    if body.get("top_p") is None:
        return None
    value = _number(body, "top_p", float, 0, 1)
    if value == 0:
        raise bad("top_p must be in (0, 1] (1 = none), got 0", "top_p")
    return value


def parse_options(state, body: dict) -> Options:
    name, dtype = state.models.resolve(body.get("model"))
    spk = state.models.manifest(name)["runtime"]["generation"]["speakers"]
    named = ", ".join(spk["names"])
    if "voice" in body:
        voice = body["voice"]
    elif named:
        voice = spk["names"][0]
    else:  # a Base model: no speaker to default to
        raise bad(f"voice is required: model {name!r} has no built-in speakers, it speaks a saved voice "
                  "(POST /v1/voices makes one)", "voice")
    voice = voice.get("id") if isinstance(voice, dict) else voice
    if not isinstance(voice, str) or not voice:
        raise bad(f"voice must be a speaker ({named}) or a saved voice name" if named
                  else f"voice must be a saved voice name (model {name!r} has no built-in speakers)", "voice")
    integer = spk["kind"] == "integer" and voice.isdecimal() and voice.isascii() and int(voice) < 2 ** 31
    if integer or (spk["kind"] == "name" and voice in spk["names"]):  # a chat template takes any integer
        speaker, context = (int(voice) if integer else voice), []
    else:
        saved = state.voices.get(voice) if VOICE_NAME.match(voice) else None
        if saved is None:
            kinds = f"neither a speaker ({named}) nor" if named else "not"
            raise bad(f"voice {voice!r} is {kinds} a saved voice (GET /v1/voices lists them)", "voice",
                      "voice_not_found")
        info, ref = saved
        if info["model"] != name:
            raise bad(f"voice {voice!r} was made with model {info['model']!r}, not {name!r}", "voice")
        speaker, context = ref.speaker, [ref]  # its codes, and speaker vector where the model has one
    runtime = state.models.manifest(name)["runtime"]
    vocab = min(g["vocab"] for g in runtime["generation"]["sampling"])
    sampling = Sampling(_number(body, "temperature", float, 0, 100), _number(body, "top_k", int, 1, vocab),
                        top_p=_top_p(body))
    try:  # what only the artifact can refuse (top-p on a frame graph exported without it), before streaming
        FrameContract(runtime).sampling_feeds(sampling)
    except InputError as e:
        raise bad(str(e), "top_p") from None
    instruct = body.get("instructions") or None
    if instruct is not None and not (isinstance(instruct, str) and runtime["generation"]["prompt"].get("instruct")):
        raise bad("instructions are not supported by this model: the voice comes from `voice` (a speaker or a "
                  "saved voice)" if isinstance(instruct, str) else "instructions must be a string", "instructions")
    return Options(name, dtype, speaker, context, sampling, _number(body, "seed", int, 0, 2 ** 63 - 1),
                   _number(body, "max_frames", int, 1, state.config.max_frames), instruct)


def parse_text(text, limit: int, param: str = "input") -> str:
    if not isinstance(text, str):
        raise bad(f"{param} must be a string", param)
    try:
        check_utf8(text, param)
    except InputError as e:
        raise bad(str(e), param) from None
    if not text.strip():
        raise bad(f"{param} is empty", param)
    if len(text) > limit:
        raise bad(f"{param} is {len(text)} characters; the limit is {limit}", param, "input_too_long")
    return text


async def speech(request: Request) -> StreamingResponse:
    state = request.app.state
    body = await read_json(request, state.config.max_body)
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise bad(f"unknown field {unknown[0]!r}; accepted: {', '.join(sorted(KNOWN))}", unknown[0])
    text = parse_text(body.get("input"), state.config.max_input_chars)
    opts = parse_options(state, body)
    fmt = body.get("response_format", "mp3")  # OpenAI's default
    if fmt not in formats():
        raise bad(f"response_format {fmt!r} is not available; this server makes {', '.join(formats())}",
                  "response_format", "unsupported_format")
    if body.get("speed", 1.0) != 1.0:
        raise bad("speed: only 1.0 is supported (the model has no speaking-rate control)", "speed")
    if body.get("stream_format", "audio") != "audio":
        raise bad("stream_format: only 'audio' is supported (no server-sent events)", "stream_format")

    rt = await load_runtime(state, opts)
    cancel, encoder = threading.Event(), None
    check_fits(opts.speech(rt))
    # waits its turn; 503 when the queue is full or the wait runs out; None: the client left meanwhile
    slot = await take_while_connected(state.slots, request.receive)
    if slot is None:
        return Response(status_code=499)  # nobody reads it (nginx's "client closed request")
    try:
        chunks = iter(opts.speech(rt, text, chunk_frames=state.config.chunk_frames, cancel=cancel,
                                  engine=state.models.engine(opts.model, opts.dtype)))
        # the first chunk before the status line: a problem found there is still a clean 400
        first = await anyio.to_thread.run_sync(next, chunks, None, limiter=state.limiter)
        encoder = Encoder(fmt, rt.rt["sample_rate"])
    except InputError as e:
        slot.release()
        raise bad(str(e), "input") from None
    except BaseException:
        slot.release()
        raise

    def cleanup():  # idempotent; no thread is inside `chunks` when it runs (to_thread waits for it)
        cancel.set()
        chunks.close()
        encoder.close()
        slot.release()

    async def stream():
        try:
            pcm = first
            head = encoder.start()
            while pcm is not None:
                data = head + encoder.feed(pcm)
                head = b""
                if data:
                    yield data
                pcm = await anyio.to_thread.run_sync(next, chunks, None, limiter=state.limiter)
            yield head + encoder.finish()
        finally:  # normal end, client gone (cancelled here within the frame in flight), or error
            cleanup()

    headers = {"X-Sample-Rate": str(rt.rt["sample_rate"]), "Cache-Control": "no-store"}
    return _Stream(stream(), cleanup, state.config.send_timeout, media_type=media_type(fmt), headers=headers)


async def take_while_connected(slots, receive):
    """A slot, or None when the client disconnects while it waits. The body has been read, so the only
    message left on the connection is the disconnect (uvicorn repeats it to the response's own listener)."""
    async def gone():
        while (await receive())["type"] != "http.disconnect":
            pass

    return await take_unless_gone(slots, gone)


async def load_runtime(state, opts: Options):
    """The shared runtime of the request's model, loaded in a worker thread the first time."""
    try:
        return await anyio.to_thread.run_sync(state.models.runtime, opts.model, opts.dtype)
    except VoxportError as e:  # a damaged or unloadable artifact: the server's problem
        raise ApiError(500, f"model {opts.model!r} could not be loaded: {e}") from None


def check_fits(speech: Speech) -> None:
    """400 before a slot is taken when max_frames (or the voice's prompt) cannot fit the context."""
    try:
        speech.check_fits()
    except InputError as e:
        raise bad(str(e), "max_frames" if "max_frames" in str(e) else "voice") from None


class _Stream(StreamingResponse):
    """Cleans up even when the body never started (a client gone before the first send is
    cancelled before the generator runs, and an unstarted generator's `finally` never does), and
    drops a client that stops reading: a send that waits more than `send_timeout` seconds (the
    connection's buffers full) ends the response, the generation and the slot."""

    def __init__(self, body, cleanup, send_timeout: float, **kw):
        super().__init__(body, **kw)
        self._cleanup, self._send_timeout = cleanup, send_timeout

    async def __call__(self, scope, receive, send):
        async def timed_send(message):
            with anyio.fail_after(self._send_timeout):
                await send(message)

        try:
            await super().__call__(scope, receive, timed_send)
        except TimeoutError:
            log.warning("%s %s: client stopped reading for %g s; stream dropped", scope.get("method"),
                        scope.get("path"), self._send_timeout)
        finally:
            self._cleanup()


async def models(request: Request) -> JSONResponse:
    state = request.app.state
    saved = state.voices.list()
    data = []
    for name in state.models.speakable():
        m = state.models.manifest(name)
        rt = m["runtime"]
        data.append({
            "id": name, "object": "model", "owned_by": "voxport", "family": m.get("family"),
            "dtypes": m.get("dtypes", []), "default_dtype": state.models.dtype,
            "sample_rate": rt["sample_rate"], "response_formats": formats(),
            "voices": [*speakers(m), *(v["name"] for v in saved if v["model"] == name)],
            "voice_prompts": takes_voice_prompts(m),
        })
    return JSONResponse({"object": "list", "data": data})
