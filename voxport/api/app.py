"""The ASGI app of `voxport serve`: the page's routes (voxport/serve.py) plus the API under /v1/,
with its key check, error shape and limits."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from voxport.api import speech, voices, ws
from voxport.fsutil import cache_root
from voxport.api.errors import ApiError
from voxport.api.pool import Models, Slots

log = logging.getLogger("voxport.serve")


@dataclass
class ServerConfig:
    models: dict[str, Path] = field(default_factory=dict)  # served name -> artifact directory
    api_key: str | None = None
    max_streams: int = 4
    voices_dir: Path = field(default_factory=lambda: cache_root() / "voices")
    dtype: str = "fp32"  # precision when `model` names none ("NAME:q4" picks one)
    # onnxruntime intra-op threads per session. 1: streams run side by side, each in its own thread;
    # measured (voxport/bench/serve_bench.py, 2 cores, busy machine) 1 vs all cores: tiny q4 7.4 vs 2.3
    # streams/s at one stream, marvis-250m q4 0.72 vs 0.47 streams/s at four
    threads: int = 1
    chunk_frames: int = 1  # frames per audio chunk: 80 ms, the first bytes after one frame
    max_input_chars: int = 4096  # OpenAI's limit for `input`
    max_body: int = 64 * 1024  # JSON bodies and WebSocket messages
    max_upload: int = 16 * 1024 * 1024  # a voice clip: 20 s of 48 kHz stereo WAV is 7.7 MB
    max_frames: int = 2000  # per utterance; the model's context caps it further


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
        if allowed:
            raise ApiError(405, f"{request.method} {request.url.path}: method not allowed; use {', '.join(allowed)}")
        raise ApiError(404, f"{request.method} {request.url.path}: no such endpoint")

    return [*routes, Route("/v1/{rest:path}", elsewhere, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])]


async def health(request: Request) -> JSONResponse:
    """For a load balancer, and to watch the slots: no key needed, nothing about the models."""
    s = request.app.state.slots
    return JSONResponse({"status": "ok", "streams": {"active": s.active, "max": s.limit, "started": s.started,
                                                     "refused": s.refused},
                         "loaded": request.app.state.models.load_s})


class ApiKey:
    """`Authorization: Bearer KEY` on every /v1/ request and WebSocket, compared in constant time."""

    def __init__(self, app, key: str | None):
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send):
        if self.key and scope["type"] in ("http", "websocket") and scope["path"].startswith("/v1/"):
            given = Headers(scope=scope).get("authorization", "")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), self.key.encode()):
                error = ApiError(401, "missing or wrong API key: send Authorization: Bearer KEY" if token or given
                                 else "missing API key: send Authorization: Bearer KEY", None, "invalid_api_key")
                if scope["type"] == "http":
                    return await error.response()(scope, receive, send)
                # a WebSocket is refused at the handshake (HTTP 403); uvicorn's denial-response path
                # (a 401 with a body) works but logs "returned without completing handshake" each time
                return await send({"type": "websocket.close", "code": 1008})
        return await self.app(scope, receive, send)


async def _api_error(request, exc: ApiError):
    return exc.response()


async def _http_error(request, exc: HTTPException):
    if request.url.path.startswith("/v1/"):
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}").response()
    return PlainTextResponse(f"{exc.status_code} {exc.detail}\n", status_code=exc.status_code, headers=exc.headers)


async def _server_error(request, exc: Exception):
    log.exception("%s %s failed", request.method, request.url.path)
    return ApiError(500, f"internal error: {type(exc).__name__}").response()


def build_app(config: ServerConfig, page_routes: list) -> Starlette:
    app = Starlette(routes=[*api_routes(), *page_routes],
                    exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error})
    app.state.config = config
    app.state.models = Models(config.models, config.dtype, config.threads)
    app.state.slots = Slots(config.max_streams)
    app.state.voices = voices.VoiceStore(config.voices_dir)
    # generation calls (one per chunk) get their own threads: never queued behind other blocking work
    app.state.limiter = anyio.CapacityLimiter(config.max_streams)
    app.add_middleware(ApiKey, key=config.api_key)
    return app
