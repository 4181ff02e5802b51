"""The ASGI app of `voxport serve`: the page's routes (voxport/serve.py) plus the API under /v1/,
with its key check, error shape and limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Route, WebSocketRoute

from voxport.api import speech, voices, ws
from voxport.fsutil import cache_root
from voxport.api.errors import ApiError
from voxport.api.guard import LOOPBACK_NAMES, ApiKey, OriginGuard
from voxport.api.pool import Models
from voxport.api.slots import Slots

log = logging.getLogger("voxport.serve")


@dataclass
class ServerConfig:
    models: dict[str, Path] = field(default_factory=dict)  # served name -> artifact directory
    api_key: str | None = None
    max_streams: int = 4
    # a request that finds every stream busy waits (first come, first served) in a queue this long, for
    # at most this many seconds, then gets 503 + Retry-After
    max_queue: int = 8
    queue_timeout: float = 10.0
    voices_dir: Path = field(default_factory=lambda: cache_root() / "voices")
    dtype: str = "fp32"  # precision when `model` names none ("NAME:q4" picks one)
    # onnxruntime intra-op threads per session. 1: streams run side by side, each in its own thread;
    # measured (voxport/bench/serve_bench.py, 2 cores, busy machine) 1 vs all cores: tiny q4 7.4 vs 2.3
    # streams/s at one stream, marvis-250m q4 0.72 vs 0.47 streams/s at four
    threads: int = 1
    # streams of one model step together (one frame call per step for all; voxport/runtime/engine.py);
    # False: each stream runs its own batch-1 frame loop in its own thread (the path before batching)
    batching: bool = True
    # with batching, the streams' codec calls too: one call per step for every stream with a chunk due, in
    # a thread of its own (voxport/runtime/engine.py Codecs); False: each stream decodes in its own thread
    batch_codec: bool = True
    codec_threads: int | None = None  # the streaming codec's session; None: `threads`
    # cache positions per stream (prompt + frames); None: the model's whole context. Texts are planned
    # into utterances that fit it; each engine slot is that long
    context: int | None = None
    # frames per audio chunk, or a schedule (the i-th chunk of an utterance, the last repeating: serve
    # --chunk-frames 1,4); None: the manifest's chunk schedule
    chunk_frames: int | tuple[int, ...] | None = None
    max_input_chars: int = 4096  # OpenAI's limit for `input`
    max_body: int = 64 * 1024  # JSON bodies and WebSocket messages
    max_upload: int = 16 * 1024 * 1024  # a voice clip: 20 s of 48 kHz stereo WAV is 7.7 MB
    max_frames: int = 2000  # per utterance; the model's context caps it further
    max_transcript_chars: int = 1000  # a saved voice's transcript: a clip of at most half the context
    # who may use it (voxport/api/guard.py): Host names, other web origins, paths public behind a key
    allowed_hosts: list[str] = field(default_factory=lambda: list(LOOPBACK_NAMES))
    allow_origins: list[str] = field(default_factory=list)
    public_paths: list[str] = field(default_factory=list)
    # seconds: a request's body; a client not reading a stream (HTTP or WebSocket) before it is dropped
    # and its slot freed; a WebSocket silent while nothing generates. Headers, keep-alive and the
    # connection cap are the HTTP server's (voxport/serve.py)
    body_timeout: float = 30.0
    send_timeout: float = 15.0
    idle_timeout: float = 120.0
    ws_queue: int = 8  # PCM chunks (80 ms each) made ahead of a WebSocket client before generation waits


def api_routes() -> list:
    routes = [
        Route("/v1/audio/speech", speech.speech, methods=["POST"]),
        Route("/v1/models", speech.models, methods=["GET"]),
        Route("/v1/voices", voices.create_voice, methods=["POST"]),
        Route("/v1/voices", voices.list_voices, methods=["GET"]),
        Route("/v1/voices/{name:path}", voices.delete_voice, methods=["DELETE"]),
        WebSocketRoute("/v1/audio/stream", ws.stream),
        Route("/healthz", health, methods=["GET"]),
    ]

    async def elsewhere(request: Request):
        """Any other /v1/ request: the error shape, not the page's 404 (its catch-all route is next)."""
        allowed = sorted({m for r in routes if isinstance(r, Route) and r.matches(request.scope)[0].name != "NONE"
                          for m in r.methods or ()} - {"HEAD"})
        path = request.url.path if len(request.url.path) <= 200 else request.url.path[:200] + "..."
        if allowed:
            raise ApiError(405, f"{request.method} {path}: method not allowed; use {', '.join(allowed)}")
        raise ApiError(404, f"{request.method} {path}: no such endpoint")

    return [*routes, Route("/v1/{rest:path}", elsewhere, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])]


async def health(request: Request) -> JSONResponse:
    """For a load balancer, and to watch the slots: no key needed, nothing about the models."""
    models = request.app.state.models
    return JSONResponse({"status": "ok", "streams": request.app.state.slots.stats(), "loaded": models.load_s,
                         "batches": models.engine_stats()})


async def _api_error(request, exc: ApiError):
    return exc.response()


async def _http_error(request, exc: HTTPException):
    if request.url.path.startswith("/v1/"):
        return ApiError(exc.status_code, f"{request.method} {request.url.path[:200]}: {exc.detail}").response()
    return PlainTextResponse(f"{exc.status_code} {exc.detail}\n", status_code=exc.status_code, headers=exc.headers)


async def _server_error(request, exc: Exception):
    log.exception("%s %s failed", request.method, request.url.path)
    return ApiError(500, f"internal error: {type(exc).__name__}").response()


def build_app(config: ServerConfig, page_routes: list) -> Starlette:
    app = Starlette(routes=[*api_routes(), *page_routes],
                    exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error})
    app.state.config = config
    app.state.models = Models(config.models, config.dtype, config.threads, config.max_streams, config.batching,
                              config.context, config.batch_codec, config.codec_threads)
    app.state.slots = Slots(config.max_streams, config.max_queue, config.queue_timeout)
    app.state.voices = voices.VoiceStore(config.voices_dir)
    # generation calls (one per chunk) get their own threads: never queued behind other blocking work
    app.state.limiter = anyio.CapacityLimiter(config.max_streams)
    # outermost last: the Host first (DNS rebinding), then the origin (other web pages), then the key
    app.add_middleware(ApiKey, key=config.api_key, public=config.public_paths)
    if config.allow_origins:  # their pages may also call the API with fetch (a CORS preflight)
        app.add_middleware(CORSMiddleware, allow_origins=config.allow_origins, allow_headers=["Authorization",
                           "Content-Type"], allow_methods=["GET", "POST", "DELETE"], expose_headers=["X-Sample-Rate"])
    app.add_middleware(OriginGuard, allowed=config.allow_origins)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=config.allowed_hosts, www_redirect=False)
    return app
