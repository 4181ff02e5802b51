"""The speech API's test plumbing: the server in a thread on a free port, plain HTTP calls."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from voxport.cli import main
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


@contextmanager
def serve_process(*args: str):
    """`voxport serve ARGS --port 0 --quiet` in its own process: (process, port) once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "voxport.cli", "serve", *map(str, args), "--port", "0", "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "serving on" not in line:
            line = proc.stderr.readline()
            assert line, "server did not start"
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its log pipe drained
        yield proc, int(re.search(r":(\d+)/ ", line).group(1))
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


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


def together(n: int, fn, timeout: float = 120) -> list:
    """fn(0) .. fn(n - 1), each in its own thread, all released at once; their results in order (None for
    one that had not returned within `timeout`)."""
    out, start = [None] * n, threading.Barrier(n)

    def run(i):
        start.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return out


def wav_samples(path: Path) -> np.ndarray:
    return sf.read(path, dtype="int16")[0]


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2")


def speak_cli(artifact_dir: Path, tmp_path: Path, text: str, *args) -> np.ndarray:
    """What `voxport speak DIR TEXT -o OUT.wav ARGS` writes: the samples the API must match."""
    out = tmp_path / f"speak-{abs(hash((str(artifact_dir), text, args)))}.wav"
    assert main(["speak", str(artifact_dir), text, "-o", str(out), *map(str, args)]) == 0
    return wav_samples(out)


def tone(path: Path, seconds=1.5, amp=0.3, sr=16000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, amp * np.sin(2 * np.pi * 180 * t), sr)
    return path


def upload(port: int, name: str, path: Path, text="A reference clip.", extra=b"", model: str | None = None):
    """POST /v1/voices as multipart: name, text, model (when given), file."""
    boundary = "voxport-test-boundary"
    fields = [("name", name), ("text", text), *([("model", model)] if model else [])]
    parts = [(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n').encode()
             for k, v in fields]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + extra + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return request(port, "POST", "/v1/voices", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def asgi_app(dirs: list[Path], host: str = "127.0.0.1", allow_hosts: list[str] = (), **api):
    """The app `voxport serve` runs, without a socket: for Starlette's TestClient (in-process, fast)."""
    from voxport.api.app import ServerConfig, build_app
    from voxport.api.guard import allowed_hosts
    from voxport.serve import WEB_ROOT, model_dirs, page_routes

    models = model_dirs(dirs)
    config = ServerConfig(models=models, allowed_hosts=allowed_hosts(host, list(allow_hosts)), **api)
    return build_app(config, page_routes(WEB_ROOT, models))


def client(app, **kw):
    from starlette.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False, **kw)
