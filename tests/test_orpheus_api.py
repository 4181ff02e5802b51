"""The speech API serves orpheus-tiny from its manifest alone: a named voice, PCM equal to `voxport
speak`'s, the model's voices listed, and Orpheus's refusals as one-line 400s."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.api_helpers import WAV_HEADER, api_server, error_of, pcm, request, speak_cli, speech

TEXT = "Well <laugh> the server speaks too."


@pytest.fixture(scope="module")
def port(orpheus_dir, tmp_path_factory):
    with api_server([orpheus_dir], voices_dir=tmp_path_factory.mktemp("voices")) as p:
        yield p


def test_named_voice_streams_what_speak_writes(port, orpheus_dir, tmp_path):
    name = orpheus_dir.name
    status, headers, body = speech(port, model=name, voice="leah", input=TEXT, response_format="wav", seed=3,
                                   max_frames=10, temperature=0.6, top_p=0.8)
    assert status == 200 and body[:4] == b"RIFF"
    ref = speak_cli(orpheus_dir, tmp_path, TEXT, "--speaker", "leah", "--seed", 3, "--max-frames", 10,
                    "--temperature", 0.6, "--top-p", 0.8)
    assert ref.shape[0] % 2048 == 0 and 0 < ref.shape[0] <= 10 * 2048 and np.abs(ref).max() > 0
    assert np.array_equal(pcm(body[WAV_HEADER:]), ref)


def test_models_list_the_voices(port, orpheus_dir):
    status, _, body = request(port, "GET", "/v1/models")
    model = next(m for m in json.loads(body)["data"] if m["id"] == orpheus_dir.name)
    assert status == 200 and model["voices"][:3] == ["tara", "leah", "jess"]


@pytest.mark.parametrize("body, message", [
    ({"voice": "nobody"}, "voice 'nobody' is neither a speaker (tara, leah, jess"),
    ({"voice": "tara", "top_k": 258}, "top_k must be between 1 and 257, got 258"),
    ({"voice": "tara", "instructions": "whisper"}, "instructions are not supported by this model"),
])
def test_bad_requests_are_one_line_400s(port, orpheus_dir, body, message):
    status, err = error_of(speech(port, model=orpheus_dir.name, input=TEXT, **body))
    assert status == 400 and message in err["message"] and "\n" not in err["message"]
