"""Who may use the server (Host, Origin, key), and the API's answers to hostile bodies: all 4xx with
the error shape, in-process (Starlette's TestClient)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from starlette.websockets import WebSocketDisconnect

from tests.api_helpers import asgi_app, client, tone

KEY = "s3cret-key"
SPEECH = {"model": "tiny", "input": "Hi.", "max_frames": 2, "response_format": "pcm"}
EVIL = "http://evil.example"
OWN = "http://127.0.0.1:8000"
WS = "ws://127.0.0.1:8000/v1/audio/stream"


@pytest.fixture(scope="module")
def app(tiny_dir, tmp_path_factory):
    return asgi_app([tiny_dir], voices_dir=tmp_path_factory.mktemp("voices"))


@pytest.fixture(scope="module")
def c(app):
    with client(app) as c:
        yield c


def _error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert code is None or err["code"] == code, err
    return err


@pytest.mark.parametrize("host,status", [
    ("127.0.0.1:8000", 200), ("localhost:8000", 200), ("[::1]:8000", 200), ("localhost", 200),
    ("attacker.example", 400), ("attacker.example:8000", 400), ("127.0.0.1.nip.io:8000", 400), ("", 400),
])
def test_host_must_be_loopback_or_the_bound_address(c, host, status):
    """DNS rebinding: a page on attacker.example whose name now resolves to 127.0.0.1."""
    for path in ("/v1/voices", "/models/tiny/manifest.json", "/healthz"):
        assert c.get(path, headers={"Host": host}).status_code == status, (host, path)


def test_hosts_follow_the_bound_address(tiny_dir):
    with client(asgi_app([tiny_dir], host="192.168.7.7", allow_hosts=["tts.lan", "fd00::7"])) as c:
        assert [c.get("/healthz", headers={"Host": h}).status_code for h in
                ("192.168.7.7:8000", "tts.lan", "localhost", "[fd00::7]:8000", "other.lan")] == [200, 200, 200, 200, 400]
    with client(asgi_app([tiny_dir], host="0.0.0.0", api_key=KEY)) as c:  # every address: the key guards
        assert c.get("/healthz", headers={"Host": "anything.example"}).status_code == 200


def test_another_origin_cannot_change_anything(c, tmp_path):
    """What a web page can make a browser send without asking: a form POST, a text/plain POST, a
    multipart upload (voices on disk), a DELETE; each refused before it does anything."""
    err = _error(c.post("/v1/audio/speech", json=SPEECH, headers={"Origin": EVIL}), 403, "origin_not_allowed")
    assert "origin 'http://evil.example' are refused" in err["message"] and "--allow-origin" in err["message"]
    ref = tone(tmp_path / "ref.wav").read_bytes()
    r = c.post("/v1/voices", headers={"Origin": EVIL}, data={"name": "planted", "text": "A clip."},
               files={"file": ("ref.wav", ref)})
    _error(r, 403, "origin_not_allowed")
    assert c.get("/v1/voices").json()["data"] == []
    _error(c.delete("/v1/voices/x", headers={"Origin": "null"}), 403)  # a sandboxed frame, file://
    _error(c.post("/v1/audio/speech", json=SPEECH, headers={"Sec-Fetch-Site": "cross-site"}), 403)
    # a "simple request" needs no preflight: text/plain is refused as not JSON, whatever the origin
    r = c.post("/v1/audio/speech", content=json.dumps(SPEECH), headers={"Content-Type": "text/plain"})
    assert "application/json" in _error(r, 415, "unsupported_media_type")["message"]
    _error(c.post("/v1/audio/speech", data={"input": "hi"}), 415)  # a urlencoded form
    # the server's own page, and programs (no Origin), go through
    assert c.post("/v1/audio/speech", json=SPEECH, headers={"Origin": OWN}).status_code == 200
    assert c.post("/v1/audio/speech", json=SPEECH).status_code == 200
    assert c.get("/v1/voices", headers={"Origin": EVIL}).status_code == 200  # reading: the browser's CORS rule


def test_websocket_from_another_origin_is_refused(c):
    with pytest.raises(WebSocketDisconnect):
        with c.websocket_connect(WS, headers={"Origin": EVIL}) as ws:
            ws.receive_text()
    with c.websocket_connect(WS, headers={"Origin": OWN}) as ws:
        ws.send_json({"type": "start", "max_frames": 2})
        assert ws.receive_json()["type"] == "ready"


def test_allow_origin(tiny_dir, tmp_path):
    app = asgi_app([tiny_dir], voices_dir=tmp_path, allow_origins=["http://localhost:3000"])
    with client(app) as c:
        r = c.options("/v1/audio/speech", headers={"Origin": "http://localhost:3000",
                                                   "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "content-type"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = c.post("/v1/audio/speech", json=SPEECH, headers={"Origin": "http://localhost:3000"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        _error(c.post("/v1/audio/speech", json=SPEECH, headers={"Origin": EVIL}), 403)


def test_the_key_guards_all_but_the_page(tiny_dir, tmp_path):
    auth = {"Authorization": f"Bearer {KEY}"}
    with client(asgi_app([tiny_dir], voices_dir=tmp_path, api_key=KEY)) as c:
        for path in ("/", "/index.html", "/app.js", "/demo/worker.js", "/src/runtime/stream.js", "/healthz"):
            assert c.get(path).status_code == 200, path
        for path in ("/api/models", "/models/tiny/manifest.json", "/models/tiny/parity.md", "/models//tiny/manifest.json",
                     "/models/tiny/onnx/frame.onnx", "/v1/models", "/v1/voices", "/models/"):
            assert c.get(path).status_code == 401, path
        assert c.get("/models/tiny/manifest.json", headers=auth).status_code == 200
    with client(asgi_app([tiny_dir], voices_dir=tmp_path, api_key=KEY,
                         public_paths=["/models/tiny/", "/api/models"])) as c:
        assert c.get("/models/tiny/manifest.json").status_code == 200 and c.get("/api/models").status_code == 200
        assert c.get("/v1/models").status_code == 401


def test_dotfiles_are_never_served(tiny_dir, tmp_path, c):
    (tiny_dir / ".env").write_text("SECRET=1")
    (tiny_dir / ".git").mkdir(exist_ok=True)
    (tiny_dir / ".git" / "config").write_text("[core]")
    try:
        for path in ("/models/tiny/.env", "/models/tiny/.git/config", "/models/tiny/%2Eenv", "/.gitignore"):
            r = c.get(path)
            assert r.status_code in (403, 404) and b"SECRET" not in r.content and b"[core]" not in r.content, path
    finally:
        (tiny_dir / ".env").unlink()
        (tiny_dir / ".git" / "config").unlink()
        (tiny_dir / ".git").rmdir()


@pytest.mark.parametrize("raw,status,message", [
    (b'{"model": "tiny", "input": "\\ud800 hi"}', 400, "input is not valid UTF-8 text (character 0: U+D800"),
    (b'{"input": "hi", "seed": ' + b"9" * 5000 + b"}", 400, "a JSON number of 5000 characters; at most 40"),
    (b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "request body nests deeper than 32 levels"),
    (b'{"input": "hi", "seed": NaN}', 400, "NaN is not a JSON number"),
    (b'{"model": "tiny", "input": "hi", "top_p": 1e300}', 400, "top_p must be between 0 and 1"),
    (b'{"model": "tiny", "input": "hi", "max_frames": 1e999}', 400, "a JSON number out of range (1e999)"),
    (b'{"model": "tiny", "input": "hi", "max_frames": 1e300}', 400, "max_frames must be between 1 and"),
    (b"\xff\xfe{}", 400, "not valid JSON"),
])
def test_hostile_json(c, raw, status, message):
    r = c.post("/v1/audio/speech", content=raw, headers={"Content-Type": "application/json"})
    assert message in _error(r, status)["message"]


def test_a_long_url(c):
    r = c.get("/models/tiny/" + "a" * 60_000)  # a name too long for the file system (was a 500)
    assert r.status_code in (403, 404)
    err = _error(c.delete("/v1/voices/" + "a" * 60_000), 400, "invalid_voice_name")
    assert len(err["message"]) < 300  # the name is quoted, not echoed whole
    assert len(_error(c.get("/v1/" + "a" * 60_000), 404)["message"]) < 300
    assert len(_error(c.get("/v1/voices/" + "a" * 60_000), 405)["message"]) < 300


def test_a_damaged_voice_file_does_not_take_the_listing_down(tiny_dir, tmp_path):
    voices = tmp_path / "voices"
    with client(asgi_app([tiny_dir], voices_dir=voices)) as c:
        r = c.post("/v1/voices", data={"name": "good", "text": "A reference clip.", "model": "tiny"},
                   files={"file": ("ref.wav", tone(tmp_path / "ref.wav").read_bytes())})
        assert r.status_code == 201, r.text
        (voices / "broken.json").write_text("{not json")
        (voices / "broken.npy").write_bytes(b"")
        (voices / "half.json").write_text(json.dumps({"name": "half"}))
        (voices / "half.npy").write_bytes(b"")
        np.save(voices / "badarr.npy", np.zeros((2, 2, 2)))
        good = json.loads((voices / "good.json").read_text())
        (voices / "badarr.json").write_text(json.dumps({**good, "name": "badarr"}))
        assert [v["name"] for v in c.get("/v1/voices").json()["data"]] == ["badarr", "good"]
        models = c.get("/v1/models")
        assert models.status_code == 200 and "good" in models.json()["data"][0]["voices"]
        assert "damaged on the server" in _error(c.post("/v1/audio/speech", json={**SPEECH, "voice": "badarr"}),
                                                 409, "voice_damaged")["message"]
        assert c.post("/v1/audio/speech", json={**SPEECH, "voice": "good"}).status_code == 200


def test_transcripts_have_a_limit(c, tmp_path):
    r = c.post("/v1/voices", data={"name": "long", "text": "word " * 1000, "model": "tiny"},
               files={"file": ("ref.wav", tone(tmp_path / "ref.wav").read_bytes())})
    assert "text is 5000 characters; a reference clip's transcript is at most 1000" in _error(r, 400)["message"]


def test_max_frames_that_cannot_fit_is_refused_up_front(c):
    err = _error(c.post("/v1/audio/speech", json={**SPEECH, "max_frames": 600}), 400)
    assert err["param"] == "max_frames" and "max_frames 600 does not fit" in err["message"]
    with c.websocket_connect(WS) as ws:
        ws.send_json({"type": "start", "max_frames": 600})
        event = ws.receive_json()
        assert event["type"] == "error" and "max_frames 600 does not fit" in event["error"]["message"]
    assert c.get("/healthz").json()["streams"]["active"] == 0
