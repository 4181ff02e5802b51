"""`voxport serve`: isolation headers, MIME types, the model listing, and nothing outside the roots."""

import http.client
import json
import socket
import threading

import pytest

from voxport.cli import main
from voxport.serve import WEB_ROOT, make_server

SECRET = "do-not-serve-this"


@pytest.fixture
def server(tmp_path):
    (tmp_path / "secret.txt").write_text(SECRET)  # beside the artifact dirs: must stay unreachable
    dirs = []
    for name in ("alpha", "beta"):
        d = tmp_path / "art" / name
        (d / "onnx").mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps({"format_version": 1}))
        (d / "onnx" / "embed.onnx").write_bytes(b"\x08\x01onnx")
        dirs.append(d)
    srv = make_server(dirs, port=0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.headers, r.read()  # header names are case-insensitive (uvicorn sends them lower-case)


def raw_get(port, path):
    """The request line exactly as written: clients normalise `..` away before sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_page_models_and_headers(server):
    status, headers, body = get(server, "/")
    assert status == 200 and b"<html" in body.lower()
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    status, headers, body = get(server, "/api/models")
    assert json.loads(body) == {"models": [{"name": "alpha", "url": "/models/alpha/"},
                                           {"name": "beta", "url": "/models/beta/"}]}
    status, headers, body = get(server, "/models/beta/onnx/embed.onnx")
    assert (status, headers["Content-Type"], body) == (200, "application/octet-stream", b"\x08\x01onnx")
    assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert get(server, "/models/alpha/manifest.json")[1]["Content-Type"] == "application/json"
    assert get(server, "/models/alpha/missing.onnx")[0] == 404
    assert get(server, "/models/gamma/manifest.json")[0] == 403  # not a served directory


def test_mime_types_of_the_js_dependencies(server):
    if not (WEB_ROOT / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("web/node_modules missing (make test runs npm ci)")
    dist = "/node_modules/onnxruntime-web/dist/"
    status, headers, body = get(server, dist + "ort-wasm-simd-threaded.jsep.wasm")
    assert status == 200 and headers["Content-Type"] == "application/wasm" and body[:4] == b"\0asm"
    status, headers, _ = get(server, dist + "ort.webgpu.min.mjs")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert get(server, "/app.js")[1]["Content-Type"].startswith("text/javascript")


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/models/alpha/../../secret.txt", "/models/alpha/../beta/manifest.json",
    "/%2e%2e/secret.txt", "/models/alpha/%2e%2e/%2e%2e/secret.txt", "/models/alpha/%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/models/alpha/..%5c..%5csecret.txt", "/models/alpha//etc/passwd", "/models/..%2f..%2fsecret.txt",
])
def test_paths_outside_the_roots_are_refused(server, path):
    status, body = raw_get(server, path)
    assert status in (403, 404), (path, status)
    assert SECRET.encode() not in body and b"root:" not in body


def test_serve_without_artifacts_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["serve"]) == 2
    assert "no artifact directories" in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a voxport artifact directory" in capsys.readouterr().err
