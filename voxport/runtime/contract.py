"""The generation contract a family writes into the manifest (`runtime.generation`), read once.

Modelled on onnxruntime-genai's genai_config.json: the frame graph's roles by input/output name, the
KV cache as name templates, which outputs feed back into which inputs, the stop rule and the sampling
groups. The runtimes hold no model knowledge of their own: everything below comes from the manifest.

    "generation": {
      "frame": {"graph": "frame", "codes": "codes", "noise": "noise",
                "embeds": {"input": "inputs_embeds", "output": "next_embeds"},
                "cache": {"layers": 2, "kv_heads": 2, "head_dim": 16, "kv": ["key", "value"],
                          "input": "past_key_values.{layer}.{kv}", "output": "present.{layer}.{kv}",
                          "layout": "static", "capacity": 2048, "slots_axis": 0, "positions_axis": 2,
                          "lengths": "cache_lengths", "shared": true},
                "per_frame": [{"input": "text_embed", "source": "trailing_text"}],   # optional
                "steps": 7,   # optional: LM steps in one call; a call fills input + steps - 1 positions
                "logits": {"codebook": 0, "repetition_penalty": "repetition_penalty", "seen": "c0_seen",
                           "bias": "c0_bias", "suppress": [2048, 3072], "allow": [2150],
                           "min_frames": 2, "min_frames_token": 2150}},                # optional
                # or, per codebook of a range: {"codebooks": [0, 7], "repetition_penalty": ..., "seen": ...}
                # (seen [1, 7, noise_vocab]; no bias)
      "codebooks": 32, "noise_vocab": 2051,
      "sampling": [{"name": "all", "codebooks": [0, 32], "vocab": 2051,
                    "inputs": {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p"},
                    "defaults": {"top_p": 1.0}}],                   # optional: the model's settings
      "stop": {"codebooks": [0, 31], "token": 2050}   # codes[a:b] all equal token: the utterance ends
    }

Every frame input and output has a row per stream on axis 0 (the sampling settings too: [rows]), so
streams batch by concatenating their rows. The cache is static (runtime/kv.py): buffers [slots,
kv_heads, capacity, head_dim], each present output bound to its past input, `lengths` the positions
each row holds; the prompt enters by the same graph run over it (seq > 1, lengths 0).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from voxport.errors import InputError
from voxport.runtime.kv import StaticCache, run_bound
from voxport.runtime.sampling import draw_noise


class FrameContract:
    def __init__(self, rt: dict):
        g = rt["generation"]
        f = g["frame"]
        self.graph, self.codes, self.noise = f["graph"], f["codes"], f["noise"]
        self.embeds_in, self.embeds_out = f["embeds"]["input"], f["embeds"]["output"]
        self.cache = f["cache"]
        # the frame graph's twin in the form WebGPU graph capture takes (same inputs and outputs): voxport-web's
        # WebGPU path runs it; onnxruntime's CPU build captures nothing, so this runtime runs `graph`
        self.capture = f.get("capture")
        self.capacity = self.cache.get("capacity")
        self.per_frame = f.get("per_frame", [])
        self.steps = f.get("steps", 1)
        # text enters one token per frame: speech may start before the text ends (live_text.py)
        self.text_per_frame = any(e["source"] == "trailing_text" for e in self.per_frame)
        self.logits = f.get("logits")
        self.codebooks, self.noise_vocab = g["codebooks"], g["noise_vocab"]
        self.sampling = g["sampling"]
        self.stop = g["stop"]
        self.defaults = {"max_frames": 125, **g.get("defaults", {})}  # 125: artifacts exported before it was written
        self.outputs = [self.codes, self.embeds_out]

    def new_cache(self, slots: int, capacity: int) -> StaticCache:
        return StaticCache(self.cache, slots, capacity)

    def feeds(self, embeds: np.ndarray, lengths: np.ndarray, sampling: dict, noise: np.ndarray,
              extra: dict | None = None) -> dict[str, np.ndarray]:
        """One call's inputs but the cache buffers: rows of embeds [rows, seq, H], each row's cached
        length, and per-row settings, noise and extras."""
        return {self.embeds_in: embeds, self.cache["lengths"]: lengths, **sampling, self.noise: noise, **(extra or {})}

    def run(self, session, feeds: dict[str, np.ndarray], cache: StaticCache, start: int = 0,
            stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One frame call over the cache's slots start..stop-1 (the feeds' rows, in order), writing
        their new positions in place: (codes [rows, K], next embeds [rows, 1, H])."""
        stop = cache.slots if stop is None else stop
        codes, embeds = run_bound(session, feeds, self.outputs, cache.bound(start, stop))
        return codes, embeds

    def sampling_feeds(self, s) -> dict[str, np.ndarray]:
        """One Sampling's settings on every group's inputs, one row (checked against each group's
        vocabulary)."""
        feeds = {}
        for group in self.sampling:
            r = self.resolve(s, group)
            names = group["inputs"]
            feeds[names["temperature"]] = np.array([r.temperature], np.float32)
            feeds[names["top_k"]] = np.array([r.top_k], np.int64)
            if "top_p" in names:
                feeds[names["top_p"]] = np.array([r.top_p], np.float32)
            elif r.top_p < 1:
                raise InputError("this artifact's frame graph samples without top-p (exported before voxport "
                                 "had it); re-export it to use top-p")
        return feeds

    @staticmethod
    def resolve(s, group: dict):
        """The settings in force for one sampling group: the request's, else the model's default from the
        manifest (top-p: else 1, none). The one place the Python side reads sampling defaults."""
        defaults = group.get("defaults", {})
        missing = [k for k in ("temperature", "top_k") if getattr(s, k) is None and k not in defaults]
        if missing:
            raise InputError(f"this artifact's manifest has no default {' or '.join(missing)} for sampling group "
                             f"{group['name']!r} (exported before voxport wrote them); give them or re-export it")
        r = replace(s, **{k: defaults[k] for k in ("temperature", "top_k") if getattr(s, k) is None},
                    top_p=s.top_p if s.top_p is not None else defaults.get("top_p", 1.0))
        r.validate(group["vocab"])
        return r

    def max_frames(self, requested: int | None) -> int:
        """Frames per utterance: the request's, else the model's default (manifest generation.defaults)."""
        return requested if requested is not None else self.defaults["max_frames"]

    def group(self, codebook: int) -> dict:
        """The sampling group that samples this codebook."""
        return next(g for g in self.sampling if g["codebooks"][0] <= codebook < g["codebooks"][1])

    def logits_state(self, s) -> LogitsState | None:
        if self.logits is None:
            return None
        default = next((g["defaults"]["repetition_penalty"] for g in self.sampling
                        if "repetition_penalty" in g.get("defaults", {})), 1.0)
        penalty = default if s.repetition_penalty is None else s.repetition_penalty
        return LogitsState(self.logits, self.noise_vocab, penalty)

    def draw_noise(self, rng: np.random.Generator) -> np.ndarray:
        return draw_noise(rng, self.codebooks, self.noise_vocab)

    def advance(self, seq: int) -> int:
        """Cache positions one frame call adds for an input of `seq` positions."""
        return seq + self.steps - 1

    def is_stop(self, frame: np.ndarray) -> bool:
        a, b = self.stop["codebooks"]
        return bool(np.all(frame[a:b] == self.stop["token"]))


class LogitsState:
    """The manifest's logits processors for one utterance, as frame-graph inputs (the reference's
    generate applies them when greedy too): a repetition penalty over the ids one codebook has
    generated so far (`seen`), and an additive bias that removes suppressed ids and, before
    `min_frames` frames, the stop token. With `codebooks` [a, b] instead of `codebook`, each codebook
    of the range has its own row of `seen` [1, b - a, vocab] and there is no bias."""

    def __init__(self, spec: dict, vocab: int, penalty: float):
        self.spec, self.frames = spec, 0
        self.rows = range(*spec["codebooks"]) if "codebooks" in spec else None
        self.seen = np.zeros((1, vocab) if self.rows is None else (1, len(self.rows), vocab), np.float32)
        self.penalty = np.array([penalty], np.float32)
        self.bias = None
        if "bias" in spec:
            self.bias = np.zeros((1, vocab), np.float32)
            lo, hi = spec["suppress"]
            self.bias[0, lo:hi] = -np.inf
            self.bias[0, spec["allow"]] = 0.0

    def feeds(self) -> dict[str, np.ndarray]:
        s, bias = self.spec, self.bias
        out = {s["repetition_penalty"]: self.penalty, s["seen"]: self.seen}
        if bias is None:
            return out
        if self.frames < s["min_frames"]:
            bias = bias.copy()
            bias[0, s["min_frames_token"]] = -np.inf
        return {**out, s["bias"]: bias}

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """The processors on the codebook's logits [1, V] in numpy (the step loop), as the frame graph
        applies its feeds: the penalty divides positive and multiplies negative logits of seen ids."""
        f = self.feeds()
        s, p = self.spec, f[self.spec["repetition_penalty"]]
        penalised = np.where(logits > 0, logits / p, logits * p)
        return np.where(f[s["seen"]] > 0, penalised, logits) + f[s["bias"]]

    def update(self, frame: np.ndarray) -> None:
        if self.rows is None:
            self.seen[0, frame[self.spec["codebook"]]] = 1.0
        else:
            self.seen[0, np.arange(len(self.rows)), frame[self.rows.start:self.rows.stop]] = 1.0
        self.frames += 1
