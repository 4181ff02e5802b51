"""The speech API's test plumbing: the server in a thread on a free port, plain HTTP calls."""

from __future__ import annotations

import http.client
import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from voxport.serve import make_server

WAV_HEADER = 44  # voxport/runtime/audio.py wav_stream_header


@contextmanager
def api_server(dirs: list[Path], **api):
    srv = make_server(dirs, port=0, quiet=True, **api)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def request(port: int, method: str, path: str, body=None, headers: dict | None = None, timeout: float = 120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    c.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
    r = c.getresponse()
    out = r.status, r.headers, r.read()
    c.close()
    return out


def speech(port: int, headers: dict | None = None, **body):
    return request(port, "POST", "/v1/audio/speech", body, headers)


def error_of(status_headers_body) -> tuple[int, dict]:
    status, _, body = status_headers_body
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}, err  # OpenAI's error shape
    return status, err


def health(port: int) -> dict:
    return json.loads(request(port, "GET", "/healthz")[2])


def wait_for(predicate, timeout: float, step: float = 0.005) -> float:
    """Seconds until predicate() held; AssertionError after `timeout`."""
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(step)
    return time.perf_counter() - t0


def wav_samples(path: Path) -> np.ndarray:
    return sf.read(path, dtype="int16")[0]


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2")
