"""voxport-web's codec chunks against the Python runtime's, in Node (onnxruntime-node, the library's own
source): by default both read the manifest's `codec_stream.chunk_schedule` (the Qwen3-TTS tiny preset's
[1, 2, 4, 8]) and cut an utterance's audio at the same frames; an explicit size or schedule cuts where
Python cuts; a bad one is refused with Python's message. The codes (greedy and seeded) are Python's,
which also checks Node's static cache bound in place."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voxport.errors import InputError
from tests.web_helpers import node_library
from voxport.runtime.sampling import Sampling

TEXT = "Hello there, this is a test of chunks."
FRAMES = 12
SCRIPT = """
const [lib, dir] = process.argv.slice(1);  // node -e: the arguments follow the executable
const { VoxportTTS } = await import(lib);
const requests = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const tts = await VoxportTTS.load(dir, { dtype: 'fp32', warmup: false });
const results = [];
for (const opts of requests) {
  const chunks = [];
  try {
    const r = await tts.generate(opts.text, { ...opts, onAudio: (pcm) => chunks.push(pcm.length) });
    results.push({ chunks, codes: r.codes, schedule: r.stats.chunk_frames });
  } catch (e) { results.push({ error: e.message, kind: e.name }); }
}
console.log(JSON.stringify(results));
"""


def run_node(artifact, requests: list[dict]) -> list[dict]:
    return json.loads(node_library(SCRIPT, str(artifact), stdin=json.dumps(requests)))


def python_chunks(runtime, **kw):
    from voxport.runtime.stream import Speech

    speech = Speech(runtime, TEXT, max_frames=FRAMES, **kw)
    sizes = [len(c) for c in speech]
    return sizes, np.stack(speech.codes), speech.stats["chunk_frames"]


def test_chunk_schedule_and_codes_equal_python(qwen_dir):
    from voxport.runtime.runtime import Runtime

    runtime = Runtime(qwen_dir)
    assert runtime.rt["codec_stream"]["chunk_schedule"] == [1, 2, 4, 8]  # what the default must follow
    cases = [({}, {"sampling": Sampling(0, 1)}, {"temperature": 0, "topK": 1}),
             ({}, {"sampling": Sampling(None, None), "seed": 7}, {"seed": 7}),  # the model's own settings
             ({"chunk_frames": [3, 1]}, {"sampling": Sampling(0, 1)}, {"chunkFrames": [3, 1], "temperature": 0, "topK": 1}),
             ({"chunk_frames": 5}, {"sampling": Sampling(0, 1)}, {"chunkFrames": 5, "temperature": 0, "topK": 1})]
    got = run_node(qwen_dir, [{"text": TEXT, "maxFrames": FRAMES, **js} for _, _, js in cases]
                   + [{"text": TEXT, "maxFrames": FRAMES, "chunkFrames": [2, 0]}])
    frame = int(runtime.rt["sample_rate"] / runtime.rt["frame_rate"])  # samples per frame
    for (chunk, kw, _), g in zip(cases, got):
        sizes, codes, schedule = python_chunks(runtime, **chunk, **kw)
        assert g["chunks"] == sizes, (chunk, kw)
        assert g["schedule"] == schedule
        assert np.array_equal(np.array(g["codes"]), codes), (chunk, kw)
    # the default cut at 1, 2, 4 frames (not one frame per call)
    assert got[0]["chunks"][:3] == [frame, 2 * frame, 4 * frame]
    with pytest.raises(InputError) as e:
        python_chunks(runtime, chunk_frames=[2, 0])
    assert got[-1] == {"error": str(e.value), "kind": "InputError"}
