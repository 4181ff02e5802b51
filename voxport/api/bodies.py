"""Request bodies read with a size limit (413 before the limit is passed, never buffered whole)."""

from __future__ import annotations

import json

from starlette.requests import Request

from voxport.api.errors import ApiError, bad


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, total = [], 0
    async for chunk in request.stream():  # a chunked upload has no length: count as it comes
        total += len(chunk)
        if total > limit:
            raise _too_large(total, limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict:
    raw = await read_body(request, limit)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad(f"request body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise bad("request body must be a JSON object")
    return body


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
    return ApiError(413, f"request body is over the limit of {limit} bytes ({size} or more)", None,
                    "request_too_large")
