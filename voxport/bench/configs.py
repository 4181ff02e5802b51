"""What one benchmark run measures: the prompt, frame counts, and the configurations in the order
they run. Kept apart so the reference, the runners and the report agree on them."""

from __future__ import annotations

from dataclasses import dataclass

TEN_WORDS = "The old lighthouse keeper watched the storm roll in tonight."  # first audio is timed on this
FULL_FRAMES, QUICK_FRAMES = 24, 10  # frames per timed generation; the prefill frame is reported apart
FIRST_AUDIO_REPEATS = 3
BROWSER_FRAMES, BROWSER_FRAMES_LARGE = 16, 6  # headless Chromium, wasm (tiny; full-size presets)
# full-size presets: the page also speaks until this many codec calls have run, then times one more utterance
# (V8 runs a fresh page's wasm in its baseline tier: in Node a codec call needed ~30 calls to reach its optimized speed)
BROWSER_WARM_CALLS = 32
PROFILE_FRAMES = 6  # the per-operator profile of each fused graph (full runs only)
BASELINE_WINDOWS = 4  # --baseline: alternating windows per precision (the result is their median)
PEER_WINDOWS, PEER_WINDOWS_QUICK = 3, 2  # another engine's runs per precision, each followed by one of voxport's


@dataclass(frozen=True)
class Config:
    engine: str  # "pytorch" (transformers generate), "steps" (33 graph calls a frame), "fused" (1 call),
    # "profile" (the fused graph under onnxruntime's profiler; not a timing), "streamed" (one request
    # through the server's engine, the codec beside the frames: runners.streamed)
    dtype: str  # weights precision; the reference is always fp32

    @property
    def label(self) -> str:
        return "pytorch eager fp32" if self.engine == "pytorch" else f"voxport {self.engine} {self.dtype}"


def configs(dtypes: list[str], quick: bool, steps: bool = True) -> list[Config]:
    """The reference first; then per precision the fused graph and (fp32 always, others unless
    --quick) the step loop where the artifact declares step graphs, so the fusion gain is visible at
    every precision."""
    out = [Config("pytorch", "fp32")]
    for d in dtypes:
        out.append(Config("fused", d))
        if steps and (d == "fp32" or not quick):
            out.append(Config("steps", d))
    return out
