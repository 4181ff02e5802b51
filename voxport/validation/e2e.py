"""End to end: ONNX runtime generation vs transformers' generate, codes and waveform."""

from __future__ import annotations

import numpy as np

from voxport.runtime.runtime import Runtime
from voxport.runtime.prompt import Utterance
from voxport.runtime.sampling import Sampling

TEXT = "The quick brown fox jumps over the lazy dog."
REF_TEXT = "She sells sea shells by the sea shore."
WAVE_RTOL = 2e-5  # waveform: max |diff| <= WAVE_RTOL * max |torch waveform| (measured 1.4e-6 on marvis-250m)


def reference_wave(sample_rate: int, seconds: float = 1.6) -> np.ndarray:
    """A deterministic voice-like test signal: a gliding harmonic tone with a little noise."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wave = sum(0.2 / h * np.sin(h * phase) for h in range(1, 6))
    wave += 0.01 * np.random.default_rng(0).standard_normal(t.shape)
    return wave.astype(np.float32)


def torch_generate(model, processor, conversation, frames: int, device: str) -> np.ndarray:
    import torch

    inputs = processor.apply_chat_template(conversation, tokenize=True, return_dict=True).to(device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=frames, do_sample=False, depth_decoder_do_sample=False)
    return out[0].cpu().numpy()


def compare_codes(ref: np.ndarray, got: np.ndarray) -> dict:
    n = min(len(ref), len(got))
    per_frame = [float(np.mean(ref[i] == got[i])) for i in range(n)]
    bad = [i for i, a in enumerate(per_frame) if a < 1.0]
    return {"frames_reference": int(len(ref)), "frames_onnx": int(len(got)),
            "identical": bool(len(ref) == len(got) and not bad),
            "first_mismatch_frame": bad[0] if bad else None, "agreement_per_frame": per_frame}


def greedy_case(rt: Runtime, model, processor, frames: int, device: str) -> tuple[dict, np.ndarray]:
    conv = [{"role": "0", "content": [{"type": "text", "text": TEXT}]}]
    ref = torch_generate(model, processor, conv, frames, device)
    got = rt.generate(TEXT, speaker=0, max_frames=frames, decode=False).codes
    return compare_codes(ref, got), got


def voice_prompt_case(rt: Runtime, model, processor, frames: int, device: str) -> dict:
    wave = reference_wave(rt.rt["sample_rate"])
    conv = [{"role": "0", "content": [{"type": "text", "text": REF_TEXT}, {"type": "audio", "path": wave}]},
            {"role": "0", "content": [{"type": "text", "text": TEXT}]}]
    ref = torch_generate(model, processor, conv, frames, device)
    ctx = Utterance(REF_TEXT, 0, rt.encode_audio(wave))
    got = rt.generate(TEXT, speaker=0, context=[ctx], max_frames=frames, decode=False).codes
    return {**compare_codes(ref, got), "context_frames": int(ctx.codes.shape[0])}


def sampling_case(rt: Runtime, frames: int = 8) -> dict:
    s = Sampling(temperature=0.9, top_k=50)
    a = rt.generate(TEXT, max_frames=frames, sampling=s, seed=1234, decode=False).codes
    b = rt.generate(TEXT, max_frames=frames, sampling=s, seed=1234, decode=False).codes
    c = rt.generate(TEXT, max_frames=frames, sampling=s, seed=4321, decode=False).codes
    return {"frames": frames, "reproducible": bool(np.array_equal(a, b)), "other_seed_differs": bool(not np.array_equal(a, c))}


def waveform_case(rt: Runtime, model, codes: np.ndarray, device: str) -> dict:
    import torch

    got = rt.decode(codes)
    eos = np.flatnonzero(np.all(codes == rt.rt["codebook_eos_token_id"], axis=-1))
    cut = codes[: eos[0]] if eos.size else codes
    clamped = np.clip(cut, 0, rt.rt["codec_codebook_size"] - 1)
    with torch.no_grad():
        ref = model.codec_model.decode(torch.from_numpy(clamped.T[None]).to(device)).audio_values[0, 0].cpu().numpy()
    fs = rt.rt["frame_size"]
    diff = np.abs(ref.astype(np.float64) - got)
    scale = float(np.abs(ref).max())
    per_frame = [float(diff[i * fs:(i + 1) * fs].max()) for i in range(len(diff) // fs)]
    max_abs = float(diff.max())
    return {"samples": int(ref.shape[0]), "max_abs": max_abs, "scale": scale, "rel": max_abs / scale,
            "allowed_rel": WAVE_RTOL, "ok": bool(max_abs <= WAVE_RTOL * scale), "max_abs_per_frame": per_frame}
