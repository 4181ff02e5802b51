"""The streaming codec decoder from the runtime's side: state in, state out, nothing else to know.

The manifest's `runtime.codec_stream` lists the state tensors (input name, output name, shape
without batch, dtype) and says the empty state is zeros; the runtime never looks at the layers.
Optional, for a codec whose decoder is not deterministic or not causal:
- `noise`: {"input", "per_frame", "distribution": "normal"}: standard normal noise [batch, frames,
  per_frame] drawn per call from the stream's generator (the request's seed), as a graph input: per
  frame 2 x per_frame float64 uniforms u, v (the generator's `random`, as the sampling noise), then
  Box-Muller sqrt(-2 ln(1 - u)) cos(2 pi v) in float64, cast to float32. Frame by frame, so a stream
  and a whole-utterance decode of the same frames draw the same noise, and a runtime with only a
  port of the uniform generator (the page's) draws it too;
- `delay_frames` and `flush_code`: the graph emits audio `delay_frames` frames behind its input (it
  looks ahead): the first delay_frames frames of output are skipped, and `flush()` ends the stream by
  feeding that many frames of `flush_code`.
"""

from __future__ import annotations

import numpy as np

from voxport.errors import ArtifactError
from voxport.runtime.graphs import Graphs


def codec_noise(spec: dict | None, rng: np.random.Generator, frames: int, batch: int = 1) -> dict[str, np.ndarray]:
    """The codec graph's noise input for `frames` frames (none where the manifest declares none)."""
    if not spec:
        return {}
    if spec.get("distribution", "normal") != "normal":
        raise ArtifactError(f"codec noise distribution {spec['distribution']!r} is not known to this runtime")
    u = rng.random((batch, frames, 2, spec["per_frame"]))
    z = np.sqrt(-2.0 * np.log1p(-u[:, :, 0])) * np.cos(2.0 * np.pi * u[:, :, 1])
    return {spec["input"]: z.astype(np.float32)}


def codec_rng(seed: int) -> np.random.Generator:
    """The codec's noise generator for a request's seed (apart from the sampling noise's)."""
    return np.random.default_rng([seed, 1])


class CodecStream:
    def __init__(self, graphs: Graphs, batch: int = 1, rng: np.random.Generator | None = None):
        spec = graphs.rt["codec_stream"]
        self.graphs, self.graph = graphs, spec["graph"]
        self.state = {s["input"]: np.zeros((batch, *s["shape"]), s["dtype"]) for s in spec["state"]}
        self.outputs = {s["output"]: s["input"] for s in spec["state"]}
        self.noise, self.rng = spec.get("noise"), rng if rng is not None else codec_rng(0)
        self.delay, self.flush_code = spec.get("delay_frames", 0), spec.get("flush_code")
        self.skip = self.delay * graphs.rt["frame_size"]  # samples still to drop (the look-ahead's start)
        self.codebooks = graphs.rt["num_codebooks"]
        self.calls = 0

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes [frames, K] (consecutive frames of one stream) -> waveform [frames * frame_size] (less
        at the start of a stream whose graph looks ahead)."""
        return decode_rows([self], [codes])[0]

    def _take(self, audio: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        """One call's output for this stream: keep its new state, drop the look-ahead's start."""
        self.state = state
        self.calls += 1
        cut = min(self.skip, audio.shape[0])
        self.skip -= cut
        return audio[cut:]

    def flush(self, decode=None) -> np.ndarray:
        """The audio the look-ahead still holds (nothing for a graph without one); `decode`: what runs
        the call (default this stream's own `decode`)."""
        if not self.delay:
            return np.zeros(0, np.float32)
        return (decode or self.decode)(np.full((self.delay, self.codebooks), self.flush_code, np.int64))


def decode_rows(streams: list[CodecStream], codes: list[np.ndarray]) -> list[np.ndarray]:
    """One codec call for several streams of one runtime, each a row (their states stacked on the batch
    axis, split again after): stream i's chunk codes[i] [frames, K] -> its waveform, as its own
    `decode` gives it. Every chunk has the same number of frames (a call's rows share the frames axis)."""
    frames = {c.shape[0] for c in codes}
    if len(frames) != 1:
        raise ValueError(f"a batched codec call takes chunks of one length, got {sorted(frames)} frames")
    first = streams[0]
    sess = first.graphs.session(first.graph)
    names = ["audio_values", *first.outputs]
    feeds = {"audio_codes": np.stack([c.T for c in codes]).astype(np.int64)}
    for name in first.state:
        feeds[name] = np.concatenate([s.state[name] for s in streams])
    noise = [codec_noise(s.noise, s.rng, codes[0].shape[0]) for s in streams]  # each stream draws its own
    for name in noise[0]:
        feeds[name] = np.concatenate([n[name] for n in noise])
    out = sess.run(names, feeds)
    return [s._take(out[0][i, 0], {first.outputs[n]: t[i:i + 1] for n, t in zip(names[1:], out[1:])})
            for i, s in enumerate(streams)]
