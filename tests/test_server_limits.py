"""The real server (a `voxport serve` process, measured from outside with psutil) under clients that
hold on: slow headers, a refused body, clients that stop reading (HTTP and WebSocket), a silent
WebSocket, and decompression-bomb uploads. Slots come back within the timeouts; memory stays put."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import soundfile as sf

from tests.api_helpers import health, request, upload, wait_for

SEND_TIMEOUT, HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS = 2.0, 1.0, 2.0, 8
RSS_BUDGET = 50e6  # bytes the server may grow over all the hostile clients of this module
LONG = "The quick brown fox jumps over the lazy dog. " * 90  # about 4000 characters: a long generation


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    voices = tmp_path_factory.mktemp("voices")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxport.cli", "serve", str(tiny_dir), "--port", "0", "--quiet", "--voices-dir",
         str(voices), "--max-streams", "2", "--send-timeout", str(SEND_TIMEOUT), "--header-timeout",
         str(HEADER_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT), "--body-timeout", "3", "--max-connections",
         str(MAX_CONNECTIONS)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = ""
    while "serving on" not in line:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "server did not start"
    port = int(re.search(r":(\d+)/ ", line).group(1))
    log: list[str] = []  # the server's log lines, read as they come (a full pipe would block it)
    threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    assert request(port, "POST", "/v1/audio/speech", {"model": "tiny", "input": "Warm up.", "max_frames": 4,
                                                      "response_format": "pcm"})[0] == 200
    yield port, psutil.Process(proc.pid), log
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def rss0(server):
    return server[1].memory_info().rss


def _closed_within(s: socket.socket, limit: float) -> float:
    """Seconds until the server closes `s` (recv gives b"" or a reset)."""
    t0 = time.perf_counter()
    s.settimeout(limit)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.perf_counter() - t0


def test_slow_headers_are_cut_at_the_header_timeout(server):
    port, _, _ = server
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:  # a byte every 0.2 s: never a whole head
        s.setblocking(False)
        closed = None
        for b in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                s.send(bytes([b]))
                if s.recv(1) == b"":
                    closed = time.perf_counter() - t0
                    break
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = time.perf_counter() - t0
                break
            time.sleep(0.2)
    assert closed is not None and HEADER_TIMEOUT <= closed < HEADER_TIMEOUT + 1.0, closed
    with socket.create_connection(("127.0.0.1", port)) as s:  # one that sends nothing at all
        assert HEADER_TIMEOUT - 0.1 <= _closed_within(s, 10) < HEADER_TIMEOUT + 1.0
    assert health(port)["status"] == "ok"


def test_connections_past_the_cap_get_a_503(server):
    port, _, _ = server
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS)]
    try:
        status = request(port, "GET", "/healthz", timeout=5)[0]
    finally:
        for s in held:
            s.close()
    assert status == 503
    time.sleep(0.3)
    assert request(port, "GET", "/healthz")[0] == 200  # and back once they are gone


def test_a_refused_body_closes_the_connection(server):
    port, _, _ = server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/voices HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                  b"Content-Length: 1000000000\r\n\r\n")
        sent, t0 = 0, time.perf_counter()
        s.settimeout(0.05)
        reply = b""
        try:  # keep sending as a client that does not look would; the server stops reading
            while time.perf_counter() - t0 < 10:
                try:
                    sent += s.send(b"\0" * 65536)
                except socket.timeout:
                    pass
                try:
                    reply += s.recv(65536)
                except socket.timeout:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        took = time.perf_counter() - t0
    assert reply.startswith(b"HTTP/1.1 413") and b"request_too_large" in reply, reply[:200]
    assert took < 4  # the linger: 2 s at most, then the connection is closed
    assert sent < 16 << 20, sent  # what the server took in before closing: bounded (4 MiB linger + buffers)


def test_a_client_that_stops_reading_frees_its_slot(server, rss0):
    port, proc, log = server
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    body = json.dumps({"model": "tiny", "input": LONG, "response_format": "pcm", "max_frames": 125}).encode()
    s.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert s.recv(12) == b"HTTP/1.1 200"  # then never another byte read
    assert health(port)["streams"]["active"] == 1
    freed = wait_for(lambda: health(port)["streams"]["active"] == 0, timeout=120, step=0.1)
    s.close()
    # the kernel's send buffer (up to 4 MB) fills at the generation's pace first, then SEND_TIMEOUT:
    # dropped by the timeout (its log line), long before this text's audio (minutes) was made
    assert any(f"client stopped reading for {SEND_TIMEOUT:g} s; stream dropped" in line for line in log), log
    assert freed < 90, freed
    print(f"stalled HTTP client: slot freed after {freed:.1f} s (send timeout {SEND_TIMEOUT} s)")
    assert proc.memory_info().rss - rss0 < RSS_BUDGET


def _ws_frame(text: str) -> bytes:
    """One masked text frame, as a client sends it (RFC 6455 5.2)."""
    data, mask = text.encode(), os.urandom(4)
    n = len(data)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_a_websocket_client_that_stops_reading_is_dropped(server, rss0):
    port, proc, log = server
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /v1/audio/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert s.recv(12) == b"HTTP/1.1 101"
    s.sendall(_ws_frame(json.dumps({"type": "start", "max_frames": 125})))
    for _ in range(3):
        s.sendall(_ws_frame(json.dumps({"type": "text", "text": LONG[:1000]})))
    s.sendall(_ws_frame(json.dumps({"type": "flush"})))
    peak, t0 = 0, time.perf_counter()
    wait_for(lambda: health(port)["streams"]["active"] == 1, timeout=10)
    while health(port)["streams"]["active"] and time.perf_counter() - t0 < 120:
        peak = max(peak, proc.memory_info().rss - rss0)
        time.sleep(0.2)
    freed = time.perf_counter() - t0
    s.close()
    assert any(f"WebSocket client stopped reading for {SEND_TIMEOUT:g} s" in line for line in log), log
    assert freed < 90, freed
    print(f"stalled WebSocket client: slot freed after {freed:.1f} s, peak RSS growth {peak / 1e6:.1f} MB")
    assert peak < RSS_BUDGET


def test_a_silent_websocket_is_closed_at_the_idle_timeout(server):
    from websockets.sync.client import connect

    port, _, _ = server
    with connect(f"ws://127.0.0.1:{port}/v1/audio/stream", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "start", "max_frames": 2}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        assert health(port)["streams"]["active"] == 1
        t0 = time.perf_counter()
        event = json.loads(ws.recv(timeout=IDLE_TIMEOUT + 5))
        took = time.perf_counter() - t0
        assert event["type"] == "error" and event["error"]["code"] == "idle_timeout"
    assert IDLE_TIMEOUT - 0.1 <= took < IDLE_TIMEOUT + 1.5, took
    wait_for(lambda: health(port)["streams"]["active"] == 0, timeout=2)


def test_decompression_bombs_are_refused_by_their_header(server, rss0, tmp_path):
    """62 KB of FLAC can claim minutes of 8-channel 192 kHz audio: gigabytes once decoded."""
    port, proc, log = server
    bomb = tmp_path / "bomb.flac"
    sf.write(bomb, np.full((192000 * 60, 8), 0.25, np.float32), 192000, subtype="PCM_16")
    assert bomb.stat().st_size < 200_000  # 60 s x 8 x 192 kHz as float32 would be 369 MB
    wide = tmp_path / "wide.wav"  # many channels: refused before decoding too
    sf.write(wide, np.zeros((4800, 16), np.float32) + 0.1, 48000)
    for i, (path, message) in enumerate([(bomb, "reference audio is 60.0 s; at most"),
                                         (wide, "16 channels at 48000 Hz; reference audio must have 1-8")] * 3):
        t0 = time.perf_counter()
        status, _, body = upload(port, f"bomb{i}", path, model="tiny")
        assert status == 400 and message in json.loads(body)["error"]["message"], body
        assert time.perf_counter() - t0 < 5
    grown = proc.memory_info().rss - rss0
    print(f"after 6 bomb uploads: server RSS {grown / 1e6:+.1f} MB")
    assert grown < RSS_BUDGET


def _blocked_client(app, scope: dict, messages: list[dict], block_after: int) -> tuple[float, list[dict]]:
    """Run the ASGI app with a client that sends `messages`, then stays silent, and that stops reading
    after `block_after` sends (its send never returns again, as when a socket's buffers are full).
    Seconds from the first blocked send until the app gave up and returned."""
    import anyio

    sent, blocked_at = [], []

    async def receive():
        if messages:
            return messages.pop(0)
        await anyio.sleep_forever()

    async def send(message):
        if len(sent) >= block_after:
            blocked_at.append(time.perf_counter())
            await anyio.sleep_forever()
        sent.append(message)

    async def run():
        with anyio.fail_after(60):
            await app(scope, receive, send)
        return time.perf_counter() - blocked_at[0]

    return anyio.run(run), sent


def _scope(kind: str, path: str, headers: dict) -> dict:
    return {"type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000), "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_a_stalled_client_frees_its_slot_within_the_send_timeout(tiny_dir, tmp_path, kind):
    """In-process, so the moment the client stops reading is known exactly (over a socket the kernel's
    buffers, up to 4 MB, come first: the test above)."""
    from tests.api_helpers import asgi_app

    app = asgi_app([tiny_dir], voices_dir=tmp_path, send_timeout=SEND_TIMEOUT)
    slots = app.state.slots
    if kind == "http":
        body = json.dumps({"model": "tiny", "input": LONG, "response_format": "pcm"}).encode()
        scope = _scope("http", "/v1/audio/speech", {"host": "127.0.0.1:8000", "content-type": "application/json",
                                                    "content-length": str(len(body))})
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        block_after = 3  # the status line, then two chunks of audio
    else:
        scope = _scope("websocket", "/v1/audio/stream", {"host": "127.0.0.1:8000"})
        messages = [{"type": "websocket.connect"},
                    {"type": "websocket.receive", "text": json.dumps({"type": "start"})},
                    {"type": "websocket.receive", "text": json.dumps({"type": "text", "text": LONG[:500] + " "})}]
        block_after = 4  # accept, ready, two chunks of audio
    took, sent = _blocked_client(app, scope, messages, block_after)
    assert len(sent) == block_after and slots.active == 0 and slots.started == 1
    assert SEND_TIMEOUT <= took < SEND_TIMEOUT + 1.0, took
    print(f"{kind}: gave up {took:.2f} s after the client stopped reading (send timeout {SEND_TIMEOUT} s)")
