"""Generated bodies, headers, paths and WebSocket messages thrown at the API, in-process: every
answer is a success or a 4xx (with the error shape under /v1/), never a 5xx or an exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_helpers import asgi_app, client

EXAMPLES = 500
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
FIELDS = ["model", "input", "voice", "response_format", "speed", "stream_format", "instructions", "top_p",
          "temperature", "top_k", "seed", "max_frames"]
HOSTS = ["127.0.0.1:8000", "localhost:8000", "[::1]:8000"]

# any JSON value, deep and wide enough to reach the limits (numbers of any size, lone surrogates)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
    | st.sampled_from(["tiny", "tiny:q4", "tiny:fp32", "0", "1", "pcm", "wav", "\ud800", "", " ", "9" * 60]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
# the fields the API reads, with values near their edges; max_frames small so a valid body is cheap
valid = {
    "input": st.sampled_from(["Hi.", "Hello there. How are you?", "caf\u00e9 \u4f60\u597d", "a " * 50]),
    "model": st.sampled_from(["tiny", "tiny:q4", "tiny:fp32"]),
    "max_frames": st.integers(1, 3),
    "response_format": st.sampled_from(["pcm", "wav", "opus", "flac", "mp3"]),
    "voice": st.sampled_from(["0", "1", "12"]),
    "top_k": st.integers(1, 2051), "top_p": st.floats(0.01, 1) | st.none(), "temperature": st.floats(0, 100),
    "seed": st.integers(0, 2 ** 63 - 1), "speed": st.just(1.0), "stream_format": st.just("audio"),
}
edge = {
    "input": st.text(max_size=60) | json_values,
    "model": st.sampled_from(["tiny:int3", "x", "", "tiny:", ":q4"]) | json_values,
    "max_frames": st.integers(-3, 0) | st.sampled_from([2 ** 31, 2 ** 64, 600, 0.5, "2", True, 1e300, 1e999])
    | json_values,
    "response_format": st.sampled_from(["aac", "xyz", ""]) | json_values,
    "voice": st.sampled_from(["-1", "99999999999", "alloy", "../x", "a" * 70, "\ud800"]) | json_values,
    "top_k": st.integers(-2, 0) | st.integers(2052, 10 ** 30) | json_values,
    "top_p": st.floats(-1, 0) | st.floats(1.0001, 1e300) | json_values,
    "temperature": st.floats(-1e9, 0, exclude_max=True) | st.floats(100.001, 1e300) | json_values,
    "seed": st.integers(-(2 ** 70), -1) | st.integers(2 ** 63, 2 ** 80) | json_values,
    "speed": json_values, "stream_format": json_values, "instructions": json_values,
}
# mostly valid with one or two fields off the edge (each answer then names that field), or anything at all
speech_bodies = st.one_of(
    st.fixed_dictionaries({"input": valid["input"], "max_frames": valid["max_frames"]},
                          optional={k: v for k, v in valid.items() if k not in ("input", "max_frames")}),
    st.fixed_dictionaries({"input": valid["input"], "max_frames": valid["max_frames"]},
                          optional={k: v for k, v in valid.items() if k not in ("input", "max_frames")}).flatmap(
        lambda b: st.sampled_from(sorted(edge)).flatmap(lambda k: edge[k].map(lambda v: {**b, k: v}))),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=5),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)  # what httpx sends
headers = st.fixed_dictionaries({}, optional={
    "Host": st.sampled_from(HOSTS) | header_text,
    "Origin": st.sampled_from(["http://127.0.0.1:8000", "http://evil.example", "null"]) | header_text,
    "Content-Type": st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                     "multipart/form-data; boundary=x", "APPLICATION/JSON"]) | header_text,
    "Authorization": st.sampled_from(["Bearer k", "Bearer", ""]) | header_text,
    "Sec-Fetch-Site": st.sampled_from(["same-origin", "cross-site", "none"]),
    "Content-Length": st.sampled_from(["0", "-1", "99999999999", "abc"]),
    "Transfer-Encoding": st.just("chunked"),
})
paths = st.sampled_from(["/v1/audio/speech", "/v1/voices", "/v1/models", "/v1/voices/x", "/v1/nope", "/healthz",
                         "/api/models", "/models/tiny/manifest.json", "/", "/models/tiny/.env", "/%2e%2e/etc/passwd",
                         "/v1/voices/%2e%2e"]) | st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                                          max_size=80).map(lambda p: "/" + p.lstrip("/"))  # "//x" is a URL's authority to httpx


@pytest.fixture(scope="module")
def c(tiny_dir, tmp_path_factory):
    app = asgi_app([tiny_dir], voices_dir=tmp_path_factory.mktemp("voices"), max_frames=3)
    with client(app) as c:
        yield c


def _check(r, path: str, method: str = "POST") -> None:
    assert r.status_code < 500, (path, r.status_code, r.text[:300])
    if path.startswith("/v1/") and r.status_code >= 400 and method != "HEAD":
        if r.text == "Invalid host header":  # Starlette's TrustedHostMiddleware: plain text, for every path
            assert r.status_code == 400
            return
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and "\n" not in err["message"], err


def test_generated_speech_bodies(c):
    statuses = []

    @SETTINGS
    @given(body=speech_bodies, raw=st.booleans())
    def run(body, raw):
        data = json.dumps(body).encode("utf-8", "surrogatepass") if not raw else json.dumps(body, ensure_ascii=True).encode()
        r = c.post("/v1/audio/speech", content=data, headers={"Content-Type": "application/json"})
        _check(r, "/v1/audio/speech")
        statuses.append(r.status_code)

    run()
    assert len(statuses) >= EXAMPLES and 200 in statuses and 400 in statuses  # both sides were reached


def test_generated_requests(c):
    seen = []

    @SETTINGS
    @given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS"]), path=paths, hdrs=headers,
           body=st.binary(max_size=300) | speech_bodies.map(lambda b: json.dumps(b).encode("utf-8", "surrogatepass")))
    def run(method, path, hdrs, body):
        hdrs = {"Host": HOSTS[0], **hdrs}
        if hdrs.get("Transfer-Encoding") or hdrs.get("Content-Length"):  # httpx computes its own framing
            hdrs.pop("Transfer-Encoding", None), hdrs.pop("Content-Length", None)
        r = c.request(method, path, content=body if method in ("POST", "PUT", "DELETE") else None, headers=hdrs)
        _check(r, path, method)
        seen.append(r.status_code)

    run()
    assert len(seen) >= EXAMPLES and {200, 400, 403, 404, 415} <= set(seen), sorted(set(seen))


def test_generated_websocket_messages(c):
    """The first message (start) and what follows, as text or bytes: an error event or a close, never a crash."""
    events = []

    @settings(SETTINGS, max_examples=150)
    @given(start=json_values | speech_bodies.map(lambda b: {"type": "start", **{k: v for k, v in b.items()
                                                                                  if k != "input"}}),
           then=st.lists(json_values | st.fixed_dictionaries({"type": st.sampled_from(["text", "flush", "cancel"]),
                                                               "text": st.text(max_size=20) | json_values}),
                         max_size=3))
    def run(start, then):
        with c.websocket_connect("ws://127.0.0.1:8000/v1/audio/stream") as ws:
            ws.send_text(json.dumps(start))
            first = ws.receive()
            if first["type"] == "websocket.close":
                return
            event = json.loads(first["text"])
            events.append(event["type"])
            assert event["type"] in ("ready", "error"), event
            if event["type"] == "error":
                assert set(event["error"]) == {"message", "type", "param", "code"}
                return
            for m in then:
                ws.send_text(json.dumps(m))
            ws.send_text(json.dumps({"type": "cancel"}))
            while (e := ws.receive())["type"] == "websocket.send":
                if e.get("text"):
                    got = json.loads(e["text"])
                    assert got["type"] != "error" or "internal" not in got["error"]["message"], got
                    if got["type"] == "cancelled":
                        break

    run()
    assert "ready" in events and "error" in events
