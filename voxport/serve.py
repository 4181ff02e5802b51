"""`voxport serve`: the browser demo (web/) plus artifact directories on 127.0.0.1, stdlib only.

What the page needs from a server, and nothing more:
- cross-origin isolation (COOP/COEP), without which onnxruntime-web cannot use wasm threads;
- the right MIME types (.wasm must be application/wasm for streaming compilation, .mjs a script);
- /api/models: the artifact directories it serves, so the page can offer them;
- files under web/ (its node_modules included: onnxruntime-web comes from npm, never a CDN) and under
  the artifact directories, and nothing else: a `..` segment, raw or percent-encoded, is refused.
"""

from __future__ import annotations

import json
import mimetypes
import posixpath
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


class Handler(BaseHTTPRequestHandler):
    server_version = "voxport"
    web_root: Path = WEB_ROOT
    models: dict[str, Path] = {}
    quiet = False

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _send(self, status: int, body: bytes, ctype: str, head: bool, extra: dict | None = None):
        self.send_response(status)
        for k, v in {**ISOLATION_HEADERS, "Content-Type": ctype, "Content-Length": str(len(body)),
                     "Cache-Control": "no-cache", **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str, head: bool):
        self._send(status, f"{status.value} {status.phrase}: {message}\n".encode(), "text/plain; charset=utf-8", head)

    def resolve(self, url_path: str) -> Path | None:
        """URL path -> file inside web/ or an artifact directory, or None (refused / not ours)."""
        path = unquote(url_path)
        # refuse rather than normalise: `..` (or a backslash or NUL) has no business in a URL here
        if "\\" in path or "\0" in path or any(seg == ".." for seg in path.split("/")):
            return None
        if path.startswith(MODELS_PREFIX):
            name, _, rest = path[len(MODELS_PREFIX):].partition("/")
            if name not in self.models:
                return None
            root = self.models[name]
        else:
            root, rest = self.web_root, path.lstrip("/")
        root = root.resolve()
        target = (root / posixpath.normpath(rest.lstrip("/") or "index.html")).resolve()
        if target != root and root not in target.parents:  # a symlink out of the tree
            return None
        if target.is_dir():
            target = target / "index.html"
        return target

    def _serve(self, head: bool):
        url = urlsplit(self.path)
        if url.path == "/api/models":
            body = json.dumps({"models": [{"name": n, "url": f"{MODELS_PREFIX}{n}/"} for n in self.models]})
            return self._send(HTTPStatus.OK, body.encode(), MIME[".json"], head)
        target = self.resolve(url.path)
        if target is None:
            return self._error(HTTPStatus.FORBIDDEN, "path outside the served directories", head)
        if not target.is_file():
            return self._error(HTTPStatus.NOT_FOUND, url.path, head)
        ctype = MIME.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, target.read_bytes(), ctype, head)


def make_server(dirs: list[Path], host: str = "127.0.0.1", port: int = 8000,
                web_root: Path = WEB_ROOT, quiet: bool = False) -> ThreadingHTTPServer:
    if not (web_root / "index.html").is_file():
        raise InputError(f"{web_root}: no index.html; the web page is not there")
    handler = type("BoundHandler", (Handler,), {"models": model_dirs(dirs), "web_root": web_root, "quiet": quiet})
    return ThreadingHTTPServer((host, port), handler)


def serve(dirs: list[Path], port: int = 8000) -> None:
    dirs = list(dirs) or default_dirs()
    if not dirs:
        raise InputError("no artifact directories given and none under ./artifacts (run `voxport export tiny`)")
    model_dirs(dirs)  # a bad directory is named before anything else
    if not (WEB_ROOT / "node_modules" / "onnxruntime-web").is_dir():
        raise InputError(f"{WEB_ROOT}/node_modules is missing: run `npm ci` in {WEB_ROOT} (or `make demo`)")
    srv = make_server(dirs, port=port)
    names = ", ".join(srv.RequestHandlerClass.models)
    print(f"serving the demo on http://127.0.0.1:{srv.server_address[1]}/ (models: {names}); Ctrl-C stops",
          file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
