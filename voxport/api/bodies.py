"""Request bodies read with a size limit (413 before the limit is passed, never buffered whole) and a
time limit, and JSON bodies parsed with limits of their own."""

from __future__ import annotations

import json

import anyio
from starlette.requests import Request

from voxport.api.errors import ApiError, bad

MAX_DEPTH = 32  # nesting of a JSON body; ours are 2 deep (a voice object in a request)
MAX_NUMBER_DIGITS = 40  # an integer or float literal; 2**63 has 19 digits


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    timeout = timeout if timeout is not None else request.app.state.config.body_timeout
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, total = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():  # a chunked upload has no length: count as it comes
                total += len(chunk)
                if total > limit:
                    raise _too_large(total, limit)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {timeout:g} s", None, "request_timeout",
                       headers={"Connection": "close"}) from None
    return b"".join(chunks)


def _number(text: str):
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise bad(f"a JSON number of {len(text)} characters; at most {MAX_NUMBER_DIGITS}")
    if not any(c in text for c in ".eE"):
        return int(text)
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999: no JSON number we take is that large
        raise bad(f"a JSON number out of range ({text[:20]})")
    return value


def parse_json(raw: bytes, what: str = "request body") -> dict:
    """A JSON object, refused (400) when it is not one, nests deeper than MAX_DEPTH, or holds a number
    literal longer than MAX_NUMBER_DIGITS (Python parses any length, in time quadratic in it)."""
    depth = current = 0
    in_string = escaped = False
    for byte in raw:  # nesting measured before parsing: the parser would recurse once per level
        if in_string:
            escaped, in_string = (not escaped and byte == 0x5C), in_string and (escaped or byte != 0x22)
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            current += 1
            depth = max(depth, current)
            if depth > MAX_DEPTH:
                raise bad(f"{what} nests deeper than {MAX_DEPTH} levels")
        elif byte in (0x5D, 0x7D):
            current -= 1
    try:
        body = json.loads(raw, parse_int=_number, parse_float=_number, parse_constant=_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad(f"{what} is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise bad(f"{what} must be a JSON object")
    return body


def _constant(name: str):
    raise bad(f"not valid JSON ({name} is not a JSON number)")


async def read_json(request: Request, limit: int) -> dict:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        # also what keeps a web page's form or text/plain POST (sent cross-site without a preflight) out
        raise ApiError(415, f"send the body as Content-Type: application/json (got {media or 'none'!r})", None,
                       "unsupported_media_type")
    return parse_json(await read_body(request, limit))


def replay(body: bytes):
    """An ASGI receive that hands back an already-read body (to parse it as a form)."""
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _too_large(size: int, limit: int) -> ApiError:
    # Connection: close: the server stops reading the rest of a body it refused
    return ApiError(413, f"request body is over the limit of {limit} bytes ({size} or more)", None,
                    "request_too_large", headers={"Connection": "close"})
