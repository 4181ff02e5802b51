"""`voxport serve`: the browser demo (web/), the artifact directories, and the speech API (voxport/api/),
on one Starlette app run by uvicorn, on 127.0.0.1 unless told otherwise (then only with an API key).

What the page needs from a server, and nothing more:
- cross-origin isolation (COOP/COEP), without which onnxruntime-web cannot use wasm threads;
- the right MIME types (.wasm must be application/wasm for streaming compilation, .mjs a script);
- /api/models: the artifact directories it serves, so the page can offer them;
- files under web/ (its node_modules included: onnxruntime-web comes from npm, never a CDN; dist/ holds
  the voxport-web bundle the page's worker imports) and under
  the artifact directories, and nothing else: a `..` segment, raw or percent-encoded, is refused, and
  so is any dotfile (`.git`, `.env`, a partial export).

Who may use it is voxport/api/guard.py's (Host, Origin, key); how long a client may take is here (the
header timeout, keep-alive, the connection cap) and in the API (body, send and idle timeouts).
"""

from __future__ import annotations

import ipaddress
import logging
import mimetypes
import posixpath
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from voxport import manifest as mf
from voxport.errors import DtypeError, InputError
from voxport.manifest import MANIFEST

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
MODELS_PREFIX = "/models/"

MIME = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".wasm": "application/wasm", ".onnx": "application/octet-stream",
    ".data": "application/octet-stream", ".jinja": "text/plain; charset=utf-8", ".map": "application/json",
    ".png": "image/png", ".svg": "image/svg+xml", ".wav": "audio/wav", ".md": "text/plain; charset=utf-8",
}

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
PAGE_HEADERS = {**ISOLATION_HEADERS, "Cache-Control": "no-cache"}


def model_dirs(dirs: list[Path]) -> dict[str, Path]:
    """URL name -> artifact directory; names are the directory names, made unique with a suffix."""
    out: dict[str, Path] = {}
    for d in dirs:
        d = Path(d).resolve()
        if not (d / MANIFEST).is_file():
            raise InputError(f"{d}: no {MANIFEST}; not a voxport artifact directory (run `voxport export`)")
        name, i = d.name, 2
        while name in out:
            name, i = f"{d.name}-{i}", i + 1
        out[name] = d
    return out


def default_dirs(root: Path = Path("artifacts")) -> list[Path]:
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))


def resolve(url_path: str, web_root: Path, models: dict[str, Path]) -> Path | None:
    """URL path (as sent, still percent-encoded) -> file inside web/ or an artifact directory, or None."""
    path = unquote(url_path)
    # refuse rather than normalise: `..` (or a backslash or NUL) has no business in a URL here, and a
    # dotfile is never served (`.git/`, `.env`, an export's `.NAME.partial-*`)
    if "\\" in path or "\0" in path or any(seg.startswith(".") for seg in path.split("/")):
        return None
    if path.startswith(MODELS_PREFIX):
        name, _, rest = path[len(MODELS_PREFIX):].partition("/")
        if name not in models:
            return None
        root = models[name]
    else:
        root, rest = web_root, path.lstrip("/")
    root = root.resolve()
    try:
        target = (root / posixpath.normpath(rest.lstrip("/") or "index.html")).resolve()
        if target != root and root not in target.parents:  # a symlink out of the tree
            return None
        if target.is_dir():
            target = target / "index.html"
    except (OSError, ValueError):  # a name too long for the file system, say: not a file we serve
        return None
    return target


def page_routes(web_root: Path, models: dict[str, Path]) -> list[Route]:
    async def listing(request: Request) -> Response:
        return JSONResponse({"models": [{"name": n, "url": f"{MODELS_PREFIX}{n}/"} for n in models]},
                            headers=PAGE_HEADERS)

    async def static(request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        target = resolve(raw.decode("latin-1"), web_root, models)
        if target is None:
            return _plain(403, "Forbidden: path outside the served directories")
        try:
            found = target.is_file()
        except OSError:
            found = False
        if not found:
            return _plain(404, f"Not Found: {request.url.path[:200]}")
        ctype = MIME.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return FileResponse(target, media_type=ctype, headers=PAGE_HEADERS)

    return [Route("/api/models", listing, methods=["GET", "HEAD"]),
            Route("/{path:path}", static, methods=["GET", "HEAD"])]


def _plain(status: int, message: str) -> Response:
    return PlainTextResponse(f"{status} {message}\n", status_code=status, headers=PAGE_HEADERS)


LINGER_SECONDS, LINGER_BYTES = 2.0, 4 << 20  # after refusing a body: how long and how much is discarded


class _Lingering:
    """The connection's transport, closed the way a refused request needs: when the server closes
    while the client is still sending a body (a 413, a 408), a plain close() with unread data makes
    the kernel answer with a reset, and the client never reads the response. Instead: send the
    response and a FIN, then discard what still arrives for at most LINGER_SECONDS / LINGER_BYTES,
    then close: the client reads its 413, and the server stops reading the body (nginx's lingering
    close, bounded)."""

    def __init__(self, transport, protocol):
        self._t, self._p, self.lingering, self.left = transport, protocol, False, LINGER_BYTES

    def __getattr__(self, name):
        return getattr(self._t, name)

    def is_closing(self) -> bool:
        return self.lingering or self._t.is_closing()

    def close(self) -> None:
        import h11

        if self.lingering or self._t.is_closing():
            return
        if self._p.conn.their_state is h11.SEND_BODY and self._t.can_write_eof():
            self.lingering = True
            self._t.write_eof()
            self._t.resume_reading()
            self._p.loop.call_later(LINGER_SECONDS, self._t.close)
        else:
            self._t.close()

    def discard(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            self._t.close()


def header_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol with a deadline on a request's headers: a connection that has not sent
    a whole request head within `seconds` of opening (or of its last response) is closed. uvicorn has
    no such limit of its own; without it a client sending a byte a second holds a connection forever.
    Its transport closes with a bounded linger (_Lingering) so a refused body's 413 reaches the client."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _deadline = None

        def data_received(self, data: bytes) -> None:
            if isinstance(self.transport, _Lingering) and self.transport.lingering:
                self.transport.discard(data)
                return
            super().data_received(data)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _expired(self) -> None:
            self._deadline = None
            if self._waiting_for_head() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(_Lingering(transport, self))
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if not self._waiting_for_head():
                self._disarm()

        def handle_websocket_upgrade(self, event) -> None:
            self._disarm()  # the WebSocket protocol takes the connection (its own idle timeout)
            super().handle_websocket_upgrade(event)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._waiting_for_head() and not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return Protocol


@dataclass
class Limits:
    """The HTTP server's limits (the API's own are in ServerConfig); serve's flags of the same names."""

    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 64


class Server:
    """uvicorn on a socket bound at construction (port 0: a free one, known at once), run by
    serve_forever() in any thread; the same surface as socketserver's servers for the tests."""

    def __init__(self, app, host: str, port: int, quiet: bool, ws_max_size: int, limits: Limits | None = None):
        import uvicorn

        limits = limits or Limits()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.socket.listen(128)
        self.server_address = self.socket.getsockname()[:2]
        self.app = app
        config = uvicorn.Config(app, lifespan="off", ws="websockets-sansio", ws_max_size=ws_max_size,
                                log_level="warning" if quiet else "info", access_log=not quiet,
                                timeout_graceful_shutdown=2, http=header_timeout_protocol(limits.header_timeout),
                                timeout_keep_alive=limits.keep_alive_timeout, limit_concurrency=limits.max_connections,
                                h11_max_incomplete_event_size=16 * 1024)  # a request head of 16 KiB at most
        self.uvicorn = uvicorn.Server(config)
        self._done = threading.Event()

    def serve_forever(self) -> None:
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self.app.state.models.close()  # the engines' threads end with the server
            self._done.set()

    def shutdown(self) -> None:
        self.uvicorn.should_exit = True
        self._done.wait(timeout=10)

    def server_close(self) -> None:
        self.socket.close()


def make_server(dirs: list[Path], host: str = "127.0.0.1", port: int = 8000, web_root: Path = WEB_ROOT,
                quiet: bool = False, limits: Limits | None = None, allow_hosts: list[str] = (), **api) -> Server:
    """`api`: the ServerConfig fields (api_key, max_streams, voices_dir, dtype, threads, allow_origins,
    public_paths, body_timeout, ...); the Host names it answers are loopback, `host` and `allow_hosts`."""
    from voxport.api.app import ServerConfig, build_app
    from voxport.api.guard import allowed_hosts

    if not (web_root / "index.html").is_file():
        raise InputError(f"{web_root}: no index.html; the web page is not there")
    models = model_dirs(dirs)
    config = ServerConfig(models=models, allowed_hosts=allowed_hosts(host, list(allow_hosts)), **api)
    return Server(build_app(config, page_routes(web_root, models)), host, port, quiet, config.max_body, limits)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(dirs: list[Path], port: int = 8000, host: str = "127.0.0.1", api_key: str | None = None,
          max_streams: int = 4, max_queue: int = 8, queue_timeout: float = 10.0, voices_dir: Path | None = None,
          dtype: str = "fp32", threads: int = 1, quiet: bool = False, allow_origins: list[str] = (),
          allow_hosts: list[str] = (), public_paths: list[str] = (), limits: dict | None = None,
          batching: bool = True, context: int | None = None, batch_codec: bool = True,
          codec_threads: int | None = None, chunk_frames: list[int] | None = None) -> None:
    """`voxport serve`: everything it can refuse is refused before it listens (one line each)."""
    from voxport import dtypes as dt
    from voxport.api.guard import check_key, check_origins

    api_key = check_key(api_key)
    if not is_loopback(host) and not api_key:
        raise InputError(f"--host {host} is reachable from other machines: give --api-key KEY "
                         "(or VOXPORT_API_KEY), or keep the default 127.0.0.1")
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {port}")
    if max_streams < 1:
        raise InputError(f"--max-streams must be >= 1, got {max_streams}")
    if threads < 0 or (codec_threads is not None and codec_threads < 0):
        raise InputError(f"--threads and --codec-threads must be >= 0 (0: all cores), got "
                         f"{threads if threads < 0 else codec_threads}")
    if chunk_frames is not None and (not chunk_frames or any(n < 1 for n in chunk_frames)):
        raise InputError(f"--chunk-frames must be frame counts >= 1 (e.g. 1,4), got {','.join(map(str, chunk_frames))}")
    if max_queue < 0:
        raise InputError(f"--max-queue must be >= 0, got {max_queue}")
    if not 0 <= queue_timeout <= 3600:
        raise InputError(f"--queue-timeout must be between 0 and 3600 seconds, got {queue_timeout:g}")
    limits = dict(limits or {})
    for flag, value in limits.items():
        if not value > 0 or value != value or value == float("inf"):
            raise InputError(f"--{flag.replace('_', '-')} must be a positive number, got {value}")
    for p in public_paths:
        if not p.startswith("/"):
            raise InputError(f"--public-path {p!r}: give a URL path prefix starting with /, e.g. /models/tiny/")
    if public_paths and not api_key:
        raise InputError("--public-path only means something with --api-key (without a key everything is public)")
    origins = check_origins(list(allow_origins))
    dt.check(dtype)
    dirs = list(dirs) or default_dirs()
    if not dirs:
        raise InputError("no artifact directories given and none under ./artifacts (run `voxport export tiny`)")
    models = model_dirs(dirs)  # a bad directory is named before anything else
    for name, d in models.items():  # an artifact it cannot speak, or without --dtype: refused now
        m = mf.load(d)
        dt_have = m["dtypes"]
        model_context = m["runtime"]["max_positions"]
        if context is not None and not 2 <= context <= model_context:
            raise InputError(f"--context must be between 2 and {d}'s {model_context} positions, got {context}")
        if dtype not in dt_have:
            raise DtypeError(f"{d}: no {dtype} variant (exported: {', '.join(dt_have)}); give --dtype one of those "
                             f"or re-export with `voxport export MODEL --dtypes {dtype}`")
    page = (WEB_ROOT / "node_modules" / "onnxruntime-web").is_dir() and (WEB_ROOT / "dist" / "voxport-web.js").is_file()
    kw = {"max_streams": max_streams, "max_queue": max_queue, "queue_timeout": queue_timeout, "dtype": dtype,
          "threads": threads, "batching": batching, "batch_codec": batch_codec, "codec_threads": codec_threads,
          "chunk_frames": tuple(chunk_frames) if chunk_frames else None, "context": context, "api_key": api_key, "allow_origins": origins, "public_paths": list(public_paths),
          **{k: limits[k] for k in ("body_timeout", "send_timeout", "idle_timeout") if k in limits}}
    if voices_dir is not None:
        kw["voices_dir"] = Path(voices_dir)
    server_limits = Limits(**{k: limits[k] for k in ("header_timeout", "keep_alive_timeout", "max_connections")
                              if k in limits})
    try:
        srv = make_server(dirs, host=host, port=port, quiet=quiet, limits=server_limits, allow_hosts=allow_hosts, **kw)
    except (OSError, OverflowError) as e:
        raise InputError(f"cannot listen on {host}:{port} ({getattr(e, 'strerror', None) or e})") from None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = srv.app.state
    for name in models:  # load now: a damaged artifact fails here, and the first request is not slow
        state.models.runtime(name, dtype)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{srv.server_address[1]}/"
    print(f"serving on {url} (models: {', '.join(models)}; API at {url}v1/, "
          f"{'key required' if api_key else 'no key'}, {max_streams} streams, {max_queue} may wait {queue_timeout:g} s)"
          + ("" if page else f"; the page needs {WEB_ROOT}/node_modules and dist (npm ci)") + "; Ctrl-C stops",
          file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
