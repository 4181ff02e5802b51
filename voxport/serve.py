"""`voxport serve`: the browser demo (web/), the artifact directories, and the speech API (voxport/api/),
on one Starlette app run by uvicorn, on 127.0.0.1 unless told otherwise (then only with an API key).

What the page needs from a server, and nothing more:
- cross-origin isolation (COOP/COEP), without which onnxruntime-web cannot use wasm threads;
- the right MIME types (.wasm must be application/wasm for streaming compilation, .mjs a script);
- /api/models: the artifact directories it serves, so the page can offer them;
- files under web/ (its node_modules included: onnxruntime-web comes from npm, never a CDN; dist/ holds
  the voxport-web bundle the page's worker imports) and under
  the artifact directories, and nothing else: a `..` segment, raw or percent-encoded, is refused.
"""

from __future__ import annotations

import ipaddress
import logging
import mimetypes
import posixpath
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from voxport.errors import InputError
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
    # refuse rather than normalise: `..` (or a backslash or NUL) has no business in a URL here
    if "\\" in path or "\0" in path or any(seg == ".." for seg in path.split("/")):
        return None
    if path.startswith(MODELS_PREFIX):
        name, _, rest = path[len(MODELS_PREFIX):].partition("/")
        if name not in models:
            return None
        root = models[name]
    else:
        root, rest = web_root, path.lstrip("/")
    root = root.resolve()
    target = (root / posixpath.normpath(rest.lstrip("/") or "index.html")).resolve()
    if target != root and root not in target.parents:  # a symlink out of the tree
        return None
    if target.is_dir():
        target = target / "index.html"
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
        if not target.is_file():
            return _plain(404, f"Not Found: {request.url.path}")
        ctype = MIME.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return FileResponse(target, media_type=ctype, headers=PAGE_HEADERS)

    return [Route("/api/models", listing, methods=["GET", "HEAD"]),
            Route("/{path:path}", static, methods=["GET", "HEAD"])]


def _plain(status: int, message: str) -> Response:
    return PlainTextResponse(f"{status} {message}\n", status_code=status, headers=PAGE_HEADERS)


class Server:
    """uvicorn on a socket bound at construction (port 0: a free one, known at once), run by
    serve_forever() in any thread; the same surface as socketserver's servers for the tests."""

    def __init__(self, app, host: str, port: int, quiet: bool, ws_max_size: int):
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.socket.listen(128)
        self.server_address = self.socket.getsockname()[:2]
        self.app = app
        config = uvicorn.Config(app, lifespan="off", ws="websockets-sansio", ws_max_size=ws_max_size,
                                log_level="warning" if quiet else "info", access_log=not quiet,
                                timeout_graceful_shutdown=2)
        self.uvicorn = uvicorn.Server(config)
        self._done = threading.Event()

    def serve_forever(self) -> None:
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self._done.set()

    def shutdown(self) -> None:
        self.uvicorn.should_exit = True
        self._done.wait(timeout=10)

    def server_close(self) -> None:
        self.socket.close()


def make_server(dirs: list[Path], host: str = "127.0.0.1", port: int = 8000, web_root: Path = WEB_ROOT,
                quiet: bool = False, **api) -> Server:
    """`api`: the ServerConfig fields (api_key, max_streams, voices_dir, dtype, threads, ...)."""
    from voxport.api.app import ServerConfig, build_app

    if not (web_root / "index.html").is_file():
        raise InputError(f"{web_root}: no index.html; the web page is not there")
    models = model_dirs(dirs)
    config = ServerConfig(models=models, **api)
    return Server(build_app(config, page_routes(web_root, models)), host, port, quiet, config.max_body)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(dirs: list[Path], port: int = 8000, host: str = "127.0.0.1", api_key: str | None = None,
          max_streams: int = 4, voices_dir: Path | None = None, dtype: str = "fp32", threads: int = 1,
          quiet: bool = False) -> None:
    from voxport import dtypes as dt

    if not is_loopback(host) and not api_key:
        raise InputError(f"--host {host} is reachable from other machines: give --api-key KEY "
                         "(or VOXPORT_API_KEY), or keep the default 127.0.0.1")
    if max_streams < 1:
        raise InputError(f"--max-streams must be >= 1, got {max_streams}")
    dt.check(dtype)
    dirs = list(dirs) or default_dirs()
    if not dirs:
        raise InputError("no artifact directories given and none under ./artifacts (run `voxport export tiny`)")
    models = model_dirs(dirs)  # a bad directory is named before anything else
    page = (WEB_ROOT / "node_modules" / "onnxruntime-web").is_dir() and (WEB_ROOT / "dist" / "voxport-web.js").is_file()
    kw = {"max_streams": max_streams, "dtype": dtype, "threads": threads, "api_key": api_key}
    if voices_dir is not None:
        kw["voices_dir"] = Path(voices_dir)
    try:
        srv = make_server(dirs, host=host, port=port, quiet=quiet, **kw)
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = srv.app.state
    for name in models:  # load now: a damaged artifact fails here, and the first request is not slow
        if state.models.manifest(name) is not None and dtype in state.models.manifest(name).get("dtypes", []):
            state.models.runtime(name, dtype)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{srv.server_address[1]}/"
    print(f"serving on {url} (models: {', '.join(models)}; API at {url}v1/, "
          f"{'key required' if api_key else 'no key'}, {max_streams} streams)"
          + ("" if page else f"; the page needs {WEB_ROOT}/node_modules and dist (npm ci)") + "; Ctrl-C stops",
          file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
