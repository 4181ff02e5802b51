"""Who may use the server: the Host it is reached by, the web origin a state-changing request or a
WebSocket comes from, and the API key. A browser lets any page it shows send a POST (form or
text/plain body: a CORS "simple request", sent without asking), open a WebSocket, and, by DNS
rebinding, make its own name resolve to 127.0.0.1; these checks are what keep such a page out of a
server on the user's own machine (README: Security).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse

from voxport.api.errors import ApiError
from voxport.errors import InputError

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"]
KEYED_PREFIXES = ("/v1/", "/models/", "/api/")  # behind --api-key; the page's own files and /healthz are not
PUBLIC_ALWAYS = ("/healthz",)


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """Host header values (without port) the server answers: loopback names, the address it listens
    on, and `extra`; ["*"] (any) when it listens on every address (a key is then required)."""
    if not host or _ip(host) is not None and _ip(host).is_unspecified:  # "" binds every address too
        return ["*"]
    names = [*LOOPBACK_NAMES, *(_bracketed(h.strip().lower()) for h in [host, *extra])]
    for name in names:
        if not name or any(c in name for c in "/@ \t") or ("*" in name and not name.startswith("*.")):
            raise InputError(f"--allow-host {name!r}: give a host name or address, without scheme or port")
    return list(dict.fromkeys(names))


def _ip(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _bracketed(name: str) -> str:
    """An IPv6 address as a Host header carries it: [::1]."""
    ip = _ip(name)
    return f"[{name}]" if ip is not None and ip.version == 6 else name


def check_origins(origins: list[str]) -> list[str]:
    """--allow-origin values as browsers send them (scheme://host[:port], lower case, no path)."""
    out = []
    for o in origins:
        u = urlsplit(o.strip())
        if u.scheme not in ("http", "https") or not u.netloc or u.path not in ("", "/") or u.query or u.fragment:
            raise InputError(f"--allow-origin {o!r}: give an origin like http://localhost:3000 (scheme, host, "
                             "port; no path)")
        out.append(f"{u.scheme}://{u.netloc}".lower())
    return out


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key.strip():
        raise InputError("--api-key is blank (only whitespace): give a real key, or none on loopback")
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in key):
        raise InputError("--api-key must be printable ASCII without spaces (it travels in an HTTP header)")
    return key


def _refuse(scope, status: int, message: str, code: str):
    """The refusal in the shape of the path: the API's JSON error, plain text for the page."""
    if scope["type"] == "websocket":  # refused at the handshake: HTTP 403
        return None
    if scope["path"].startswith("/v1/"):
        return ApiError(status, message, None, code).response()
    return PlainTextResponse(f"{status} {message}\n", status_code=status)


class OriginGuard:
    """State-changing requests (anything but GET/HEAD/OPTIONS) and WebSocket handshakes that a
    browser sends from another origin are refused (403); programs that send no Origin are not
    affected. `allowed`: extra origins (--allow-origin)."""

    def __init__(self, app, allowed: list[str]):
        self.app, self.allowed = app, set(allowed)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" or (scope["type"] == "http" and scope["method"] not in SAFE_METHODS):
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            own = f"http://{headers.get('host', '')}".lower()
            if origin is not None:
                refused = origin.lower() != own and origin.lower() not in self.allowed
                why = f"requests from origin {origin[:100]!r} are refused"
            else:  # no Origin: a program, or an old browser; a cross-site fetch says so here
                refused = headers.get("sec-fetch-site") == "cross-site"
                why = "cross-site requests are refused"
            if refused:
                response = _refuse(scope, 403, f"{why}: only this server's own page may POST, DELETE or open "
                                   "a WebSocket (start the server with --allow-origin ORIGIN for another)",
                                   "origin_not_allowed")
                if response is None:
                    return await send({"type": "websocket.close", "code": 1008})
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class ApiKey:
    """`Authorization: Bearer KEY` on every request but the page's own files, /healthz and the
    --public-path prefixes, compared in constant time."""

    def __init__(self, app, key: str | None, public: list[str] | tuple = ()):
        self.app, self.key = app, key
        self.public = (*PUBLIC_ALWAYS, *public)

    def needs_key(self, path: str) -> bool:
        path = re.sub("/+", "/", path)
        if any(path == p or path.startswith(p if p.endswith("/") else p + "/") for p in self.public):
            return False
        return path.startswith(KEYED_PREFIXES) or path.rstrip("/") in {p.rstrip("/") for p in KEYED_PREFIXES}

    async def __call__(self, scope, receive, send):
        if self.key and scope["type"] in ("http", "websocket") and self.needs_key(scope["path"]):
            given = Headers(scope=scope).get("authorization", "")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode("utf-8", "replace"), self.key.encode()):
                message = ("missing or wrong API key: send Authorization: Bearer KEY" if token or given
                           else "missing API key: send Authorization: Bearer KEY")
                if scope["type"] == "websocket":
                    # refused at the handshake (HTTP 403); uvicorn's denial-response path (a 401 with a
                    # body) works but logs "returned without completing handshake" each time
                    return await send({"type": "websocket.close", "code": 1008})
                if scope["path"].startswith("/v1/"):
                    return await ApiError(401, message, None, "invalid_api_key").response()(scope, receive, send)
                return await PlainTextResponse(f"401 {message}\n", status_code=401,
                                               headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
        return await self.app(scope, receive, send)
