"""The streaming codec decoder from the runtime's side: state in, state out, nothing else to know.

The manifest's `runtime.codec_stream` lists the state tensors (input name, output name, shape
without batch, dtype) and says the empty state is zeros; the runtime never looks at the layers.
"""

from __future__ import annotations

import numpy as np

from voxport.runtime.graphs import Graphs


class CodecStream:
    def __init__(self, graphs: Graphs, batch: int = 1):
        spec = graphs.rt["codec_stream"]
        self.graphs, self.graph = graphs, spec["graph"]
        self.state = {s["input"]: np.zeros((batch, *s["shape"]), s["dtype"]) for s in spec["state"]}
        self.outputs = {s["output"]: s["input"] for s in spec["state"]}
        self.calls = 0

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes [frames, K] (consecutive frames of one stream) -> waveform [frames * frame_size]."""
        sess = self.graphs.session(self.graph)
        names = ["audio_values", *self.outputs]
        out = sess.run(names, {"audio_codes": codes.T[None].astype(np.int64), **self.state})
        self.state = {self.outputs[n]: t for n, t in zip(names[1:], out[1:])}
        self.calls += 1
        return out[0][0, 0]
