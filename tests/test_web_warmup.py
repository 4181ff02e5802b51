"""voxport-web's load-time warm-up, in Node (onnxruntime-node, the library's own source): a number asks
for that many streaming-codec calls after the one-frame utterance, reported as progress events and kept
out of the first request's stats; Node's default makes none (V8 tiering is a wasm matter); false skips the
warm-up; a bad value is refused with one message before anything is read."""

from __future__ import annotations

import json

from tests.web_helpers import node_library

SCRIPT = """
const [lib, dir] = process.argv.slice(1);  // node -e: the arguments follow the executable
const { VoxportTTS } = await import(lib);
const warmups = (events) => (e) => { if (e.status === 'warmup') events.push(e); };
const out = { asked: [], plain: [], none: [], errors: [] };
const tts = await VoxportTTS.load(dir, { dtype: 'fp32', warmup: 3, onProgress: warmups(out.asked) });
out.statsAfterLoad = tts.stats;
const r = await tts.generate('Hello there.', { maxFrames: 2, temperature: 0, topK: 1, chunkFrames: 1 });
out.requestCodecCalls = r.stats.graph_ms[tts.manifest.runtime.codec_stream.graph].calls;
out.frames = r.codes.length;
await tts.release();
await (await VoxportTTS.load(dir, { dtype: 'fp32', onProgress: warmups(out.plain) })).release();
await (await VoxportTTS.load(dir, { dtype: 'fp32', warmup: false, onProgress: warmups(out.none) })).release();
for (const bad of [-1, 1.5, 'x']) {
  try { await VoxportTTS.load(dir + '/no-such-dir', { warmup: bad }); out.errors.push(null); }
  catch (e) { out.errors.push([e.name, e.message]); }
}
console.log(JSON.stringify(out));
"""


def test_codec_warmup_calls_progress_and_refusals(tiny_dir):
    got = json.loads(node_library(SCRIPT, str(tiny_dir)))
    assert got["asked"] == [{"status": "warmup"}] + [{"status": "warmup", "codecCalls": i, "of": 3} for i in (1, 2, 3)]
    assert got["statsAfterLoad"] is None
    # the request's own calls only: one per frame (the warm-up's four codec calls are not counted)
    assert got["requestCodecCalls"] == got["frames"] == 2
    assert got["plain"] == [{"status": "warmup"}]  # Node's default: the frame only
    assert got["none"] == []
    for bad, err in zip(("-1", "1.5", '"x"'), got["errors"]):
        # refused before the (missing) directory is read
        assert err == ["InputError", f"warmup must be true, false or a number of codec calls >= 0, got {bad}"]
