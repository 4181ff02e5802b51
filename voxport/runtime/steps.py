"""Generation from the step graphs (the manifest's generation.steps): a backbone step per frame,
then one depth step per further codebook, sampling and the logits processors in numpy. One runtime
call per step (33 per frame for CSM, 17 for Qwen3-TTS): slow, and kept as the debugging and parity
path the fused frame graph is compared with."""

from __future__ import annotations

import time

import numpy as np

from voxport.errors import ArtifactError
from voxport.runtime.kv import cache_names
from voxport.runtime.sampling import Sampling, choose, draw_noise


def _cache(spec: dict) -> tuple[list[str], list[np.ndarray]]:
    names = cache_names(spec)[0]
    return names, [np.zeros((1, spec["kv_heads"], 0, spec["head_dim"]), np.float32) for _ in names]


def generate_steps(runtime, prepared, sampling: Sampling, seed: int) -> tuple[np.ndarray, dict]:
    """Frames of codes [frames, K] (the stop frame included, as transformers) and timing stats."""
    steps = runtime.rt["generation"].get("steps")
    if steps is None:
        raise ArtifactError(f"{runtime.graphs.dir}: this artifact declares no step graphs; use the fused path")
    c, graphs = runtime.contract, runtime.graphs
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    embed, backbone = steps["embed"], steps["backbone"]
    embeds, per_frame = runtime.embed(prepared)  # speaker vectors added; per-frame text where the contract feeds it
    logits_state = c.logits_state(sampling)
    names, past = _cache(backbone["cache"])
    frames, pos, marks = [], 0, [t0]  # marks: when each frame was done
    next_ids = np.full((1, 1), embed["frame_token"], np.int64)
    while True:
        seq = embeds.shape[1]
        out = graphs.run(backbone["graph"], {
            backbone["embeds"]: embeds, backbone["attention_mask"]: np.ones((1, pos + seq), np.int64),
            backbone["position_ids"]: np.arange(pos, pos + seq, dtype=np.int64)[None], **dict(zip(names, past))})
        hidden, logits, past = out[0], out[1], out[2:]
        pos += seq
        noise = draw_noise(rng, c.codebooks, c.noise_vocab)
        frames.append(_depth(runtime, steps["depth"], hidden[:, -1], logits[:, -1], sampling, noise[0], logits_state))
        marks.append(time.perf_counter())
        if logits_state:
            logits_state.update(frames[-1])
        if c.is_stop(frames[-1]) or len(frames) >= prepared.max_frames:
            break
        # the frame's codes embedded, plus what the fused graph adds to its next input (streamed text)
        embeds = graphs.run(embed["graph"], {embed["ids"]: next_ids, embed["codes"]: frames[-1][None, None]})[0]
        for extra in per_frame[min(len(frames) - 1, len(per_frame) - 1)].values():
            embeds = embeds + extra
    return np.stack(frames), {
        "frames": len(frames), "first_frame_s": marks[1] - t0,
        "runtime_calls_per_frame": 2 + (c.codebooks - 1),  # embed + backbone + depth steps
        # wall time of each frame (the first includes the prompt's prefill), for benchmarks
        "frame_s": [b - a for a, b in zip(marks, marks[1:])]}


def _depth(runtime, depth: dict, hidden: np.ndarray, logits: np.ndarray, sampling: Sampling,
           noise: np.ndarray, logits_state) -> np.ndarray:
    """One frame of K codes: codebook 0 from the backbone's logits, the rest from the depth steps;
    codebook i draws with the first V of noise[i] (the fused graph's `noise` input, same arithmetic),
    after the contract's logits processors where they act on it."""
    contract = runtime.contract

    def pick(i: int, logits: np.ndarray) -> np.ndarray:
        if logits_state and logits_state.spec["codebook"] == i:
            logits = logits_state.apply(logits)
        r = contract.resolve(sampling, contract.group(i))
        return choose(logits, r, noise[i:i + 1, :logits.shape[-1]], r.top_p)

    c = pick(0, logits)
    codes = [c[0]]
    ids = np.array([[0, c[0]]], np.int64)  # position 0 is replaced by the backbone hidden state
    names, past = _cache(depth["cache"])
    for i in range(1, contract.codebooks):
        out = runtime.graphs.run(depth["graph"], {depth["ids"]: ids, depth["hidden"]: hidden, **dict(zip(names, past))})
        c = pick(i, out[0])
        past = out[1:]
        codes.append(c[0])
        ids = c[:, None]
    return np.array(codes, np.int64)
