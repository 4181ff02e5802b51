"""Parity of the streaming path: the fused frame graph, the streaming Mimi decoder, utterance joins."""

from __future__ import annotations

import numpy as np

from voxport.runtime.codec_stream import CodecStream
from voxport.runtime.runtime import Runtime
from voxport.runtime.prompt import Utterance
from voxport.runtime.sampling import Sampling, draw_noise
from voxport.runtime.stream import Speech
from voxport.validation.e2e import TEXT, compare_codes

STREAM_RTOL = 1e-4  # streaming vs batch decode, max |diff| / max |batch| (measured ~2e-6 on tiny)
CHUNKS = (1, 2, 3, 7)
LONG_TEXT = " ".join(["The first sentence is here.", "Then a second one follows it!", "Is this the third?",
                      "Numbers like 3.14 stay whole.", "And this one ends the paragraph."] * 12)


def fused_codes(rt: Runtime, frames: int, sampling: Sampling = Sampling(), seed: int = 0,
                text: str = TEXT) -> np.ndarray:
    speech = Speech(rt, text, max_frames=frames, sampling=sampling, seed=seed, chunk_frames=frames)
    for _ in speech:
        pass
    return np.stack(speech.codes)


def fused_greedy_case(rt: Runtime, reference: np.ndarray, frames: int) -> dict:
    """Fused graph vs transformers.generate (the greedy reference) and vs the step graphs."""
    got = fused_codes(rt, frames)
    steps = rt.generate(TEXT, max_frames=frames, decode=False).codes
    return {**compare_codes(reference, got), "identical_to_step_graphs": bool(np.array_equal(steps, got))}


def torch_frame_codes(model, family, rt: Runtime, frames: int, sampling: Sampling, seed: int) -> np.ndarray:
    """The PyTorch frame module, run eagerly on the same prompt and the same per-frame noise."""
    import torch

    specs = {g.name: g for g in family.graphs() if g.name in ("embed", "frame")}
    prepared = rt.prepare([Utterance(TEXT, 0)], frames, sampling)
    frames = prepared.max_frames
    rng = np.random.default_rng(seed)
    cfg = rt.rt["backbone"]
    with torch.no_grad():
        embeds = specs["embed"].module(*(torch.from_numpy(a) for a in prepared.feeds.values()))
        past = [torch.zeros(1, cfg["kv_heads"], 0, cfg["head_dim"]) for _ in range(2 * cfg["layers"])]
        pos, out = 0, []
        for _ in range(frames):
            seq = embeds.shape[1]
            noise = torch.from_numpy(draw_noise(rng, rt.rt["num_codebooks"], rt.rt["codebook_vocab"]))
            codes, embeds, *past = specs["frame"].module(
                embeds, torch.ones(1, pos + seq, dtype=torch.long), torch.arange(pos, pos + seq)[None],
                torch.tensor(sampling.temperature, dtype=torch.float32), torch.tensor(sampling.top_k), noise, *past)
            pos += seq
            out.append(codes[0].numpy())
    return np.stack(out)


def fused_sampling_case(rt: Runtime, model, family, frames: int = 12, seed: int = 1234) -> dict:
    s = Sampling(temperature=0.9, top_k=50)
    fused = fused_codes(rt, frames, s, seed)
    steps = rt.generate(TEXT, max_frames=frames, sampling=s, seed=seed, decode=False).codes
    ref = torch_frame_codes(model, family, rt, frames, s, seed)
    other = fused_codes(rt, frames, s, seed + 1)
    return {"frames": frames, "temperature": s.temperature, "top_k": s.top_k,
            "fused_equals_torch": bool(np.array_equal(fused, ref)),
            "fused_equals_step_graphs": bool(np.array_equal(fused, steps)),
            "other_seed_differs": bool(not np.array_equal(fused, other))}


def stream_decode_case(rt: Runtime, reference_decode, codebook_size: int, frames: int = 320) -> dict:
    """Streaming decode in chunks of 1, 2, 3, 7 frames vs PyTorch's batch decode of the same codes
    (reference_decode: codes [K, frames] -> waveform), past the codec transformer's window (Mimi: 250
    steps, 2 per frame; Qwen3-TTS's 12 Hz codec: 72 frames)."""
    k = rt.rt["num_codebooks"]
    codes = np.random.default_rng(0).integers(0, codebook_size, (frames, k))
    ref = reference_decode(codes.T)
    scale, fs = float(np.abs(ref).max()), rt.rt["frame_size"]
    rows = {}
    for chunk in CHUNKS:
        codec = CodecStream(rt.graphs)
        got = np.concatenate([codec.decode(codes[i:i + chunk]) for i in range(0, frames, chunk)])
        diff = np.abs(got.astype(np.float64) - ref)
        rows[str(chunk)] = {"max_abs": float(diff.max()), "rel": float(diff.max()) / scale, "calls": codec.calls,
                            "max_abs_per_frame": [float(diff[i * fs:(i + 1) * fs].max()) for i in range(frames)]}
    worst = max(r["rel"] for r in rows.values())
    return {"frames": frames, "scale": scale, "allowed_rel": STREAM_RTOL, "worst_rel": worst,
            "ok": bool(worst <= STREAM_RTOL), "chunks": rows}


def join_case(rt: Runtime, frames_per_utterance: int = 8) -> dict:
    """Long text in consecutive utterances, one Mimi stream throughout. The step across each join
    (|x[j] - x[j-1]|) must be no larger than the largest step inside the utterances; restarting the
    codec at the join instead is measured beside it."""
    speech = Speech(rt, long_text(rt, frames_per_utterance), max_frames=frames_per_utterance, chunk_frames=3)
    wave = np.concatenate(list(speech))
    fs = rt.rt["frame_size"]
    joins, offset = [], 0
    for u in speech.utterances[:-1]:
        offset += u["frames"] * fs
        joins.append(offset)
    step = np.abs(np.diff(wave.astype(np.float64)))
    at_join = [float(step[j - 1]) for j in joins]
    inside = np.delete(step, [j - 1 for j in joins])
    reset = _reset_jumps(rt, speech)
    return {"utterances": len(speech.utterances), "joins": len(joins),
            "join_step_max": max(at_join) if at_join else None, "inside_step_max": float(inside.max()),
            "inside_step_p99": float(np.percentile(inside, 99)), "reset_join_step_max": reset,
            "ok": bool(at_join) and max(at_join) <= float(inside.max())}


def long_text(rt: Runtime, frames: int) -> str:
    """LONG_TEXT repeated until it no longer fits one utterance of this model's context."""
    text = LONG_TEXT
    while rt.prompts.build([Utterance(text)])[0].shape[1] + frames <= rt.rt["max_positions"]:
        text = f"{text} {LONG_TEXT}"
    return text


def _reset_jumps(rt: Runtime, speech: Speech) -> float | None:
    """The same codes decoded with a fresh codec state per utterance (what carrying the state avoids)."""
    steps = []
    prev = None
    for u in speech.utterances:
        codes = np.stack(speech.codes[u["first_frame"]:u["first_frame"] + u["frames"]])
        w = CodecStream(rt.graphs).decode(codes)
        if prev is not None:
            steps.append(abs(float(w[0]) - float(prev)))
        prev = w[-1]
    return max(steps) if steps else None
