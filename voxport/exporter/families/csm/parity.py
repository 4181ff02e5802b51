"""CSM / Marvis end-to-end parity cases: the ONNX runtime against transformers' own generate, codec
and streaming decode, on one reference model (the graphs were checked shape by shape before this)."""

from __future__ import annotations

import time

import numpy as np

from voxport.runtime.prompt import Utterance
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling, draw_noise
from voxport.exporter import parity_kit as kit
from voxport.exporter.parity_kit import REF_TEXT, TEXT, compare_codes, fused_codes, reference_wave
from voxport.exporter.spec import ParityRow


def run(rt, family, ckpt, frames: int, device: str, progress) -> list[ParityRow]:
    model = family.model
    from voxport.exporter.families.csm.checkpoint import processor as checkpoint_processor

    processor = checkpoint_processor(ckpt.path)
    progress(f"parity: greedy generation, {frames} frames, ONNX vs transformers.generate")
    greedy, codes = greedy_case(rt, model, processor, frames, device)
    progress("parity: waveform, ONNX Mimi decoder vs PyTorch on the generated codes")
    wave = waveform_case(rt, model, codes, device)
    progress("parity: voice prompt (context utterance through the Mimi encoder graph)")
    voice = voice_prompt_case(rt, model, processor, max(10, frames // 2), device)
    progress("parity: sampling reproducibility")
    sampling = sampling_case(rt)
    progress(f"parity: fused frame graph, {frames} greedy frames vs transformers and the step graphs")
    fused = fused_greedy_case(rt, codes, frames)
    progress("parity: fused frame graph sampling, same noise as PyTorch and the step graphs")
    fused_sampling = fused_sampling_case(rt, model, family)
    progress("parity: streaming Mimi decode (chunks of 1, 2, 3, 7 frames) vs batch decode")
    stream = kit.stream_decode_case(rt, lambda codes: _decode(model, codes, device),
                                          rt.rt["codec_codebook_size"])
    progress("parity: utterance joins in long text")
    joins = kit.join_case(rt)

    return [
        ParityRow("greedy", greedy["identical"], f"{kit.same(greedy)} to transformers.generate over "
                  f"{greedy['frames_reference']} frames", greedy,
                  f"greedy generation: codes differ from transformers at frame {greedy['first_mismatch_frame']}"
                  f" ({greedy['frames_onnx']} vs {greedy['frames_reference']} frames)"),
        ParityRow("waveform", wave["ok"], f"{wave['samples']} samples, max abs {wave['max_abs']:.2e}, relative "
                  f"{wave['rel']:.2e} (allowed {wave['allowed_rel']:.0e})", wave,
                  f"waveform: relative error {wave['rel']:.3g} > {wave['allowed_rel']}"),
        ParityRow("voice_prompt", voice["identical"], f"{kit.same(voice)} with {voice['context_frames']} context "
                  f"frames over {voice['frames_reference']} frames", voice,
                  f"voice prompt: codes differ from transformers at frame {voice['first_mismatch_frame']}"),
        ParityRow("sampling", sampling["reproducible"] and sampling["other_seed_differs"],
                  f"seed reproducible: {sampling['reproducible']}, another seed differs: "
                  f"{sampling['other_seed_differs']}", sampling, f"sampling: not reproducible from the seed ({sampling})"),
        ParityRow("fused", fused["identical"] and fused["identical_to_step_graphs"],
                  f"fused frame graph {kit.same(fused)} to transformers over {fused['frames_reference']} greedy "
                  f"frames; identical to the step graphs: {fused['identical_to_step_graphs']}", fused,
                  f"fused frame graph: greedy codes differ (from transformers at frame {fused['first_mismatch_frame']}; "
                  f"equal to step graphs: {fused['identical_to_step_graphs']})"),
        ParityRow("fused_sampling", fused_sampling["fused_equals_torch"] and fused_sampling["fused_equals_step_graphs"]
                  and fused_sampling["other_seed_differs"],
                  f"T={fused_sampling['temperature']}, top-k {fused_sampling['top_k']}, top-p "
                  f"{fused_sampling.get('top_p') or 1}, {fused_sampling['frames']} frames, same noise: equals PyTorch: "
                  f"{fused_sampling['fused_equals_torch']}, equals step graphs: {fused_sampling['fused_equals_step_graphs']}, "
                  f"another seed differs: {fused_sampling['other_seed_differs']}", fused_sampling,
                  f"fused frame graph sampling with the same noise: {fused_sampling}"),
        kit.stream_decode_row(stream),
        kit.join_row(joins),
    ]


def _decode(model, codes, device: str):
    import torch

    with torch.no_grad():
        return model.codec_model.decode(torch.from_numpy(codes[None]).to(device)).audio_values[0, 0].cpu().numpy()


class _FrameClock:
    """A transformers streamer that only notes when each frame arrives. generate() puts the prompt
    first, then one [batch, K] tensor per frame."""

    def __init__(self):
        self.marks: list[float] = []

    def put(self, value):
        self.marks.append(time.perf_counter())

    def end(self):
        pass


def reference_generate(family, text: str, frames: int, device: str):
    """transformers' generate, greedy, speaker 0: (codes, wall time per frame, batch Mimi decode)."""
    import torch

    from voxport.exporter.families.csm.checkpoint import processor as checkpoint_processor

    model = family.model
    processor = checkpoint_processor(family.source)
    conv = [{"role": "0", "content": [{"type": "text", "text": text}]}]
    inputs = processor.apply_chat_template(conv, tokenize=True, return_dict=True).to(device)
    clock = _FrameClock()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=frames, do_sample=False, depth_decoder_do_sample=False,
                             streamer=clock)
    marks = [t0, *clock.marks[1:]]  # the first put is the prompt, not a frame
    size = model.config.codec_config.codebook_size

    def decode(codes):
        audio = torch.as_tensor(codes).T[None].to(device).clamp(0, size - 1)
        return model.codec_model.decode(audio)

    return out[0].cpu().numpy(), [b - a for a, b in zip(marks, marks[1:])], decode


WAVE_RTOL = 2e-5  # waveform: max |diff| <= WAVE_RTOL * max |torch waveform| (measured 1.4e-6 on marvis-250m)


def torch_generate(model, processor, conversation, frames: int, device: str) -> np.ndarray:
    import torch

    inputs = processor.apply_chat_template(conversation, tokenize=True, return_dict=True).to(device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=frames, do_sample=False, depth_decoder_do_sample=False)
    return out[0].cpu().numpy()


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
        capacity = prepared.tokens + frames  # static buffers, as the runtime's
        past = [torch.zeros(1, cfg["kv_heads"], capacity, cfg["head_dim"]) for _ in range(2 * cfg["layers"])]
        pos, out = 0, []
        for _ in range(frames):
            noise = torch.from_numpy(draw_noise(rng, rt.rt["num_codebooks"], rt.rt["codebook_vocab"]))
            r = rt.contract.resolve(sampling, rt.contract.group(0))
            codes, next_embeds, *past = specs["frame"].module(
                embeds, torch.tensor([pos]), torch.tensor([r.temperature], dtype=torch.float32),
                torch.tensor([r.top_k]), torch.tensor([r.top_p], dtype=torch.float32), noise, *past)
            pos += embeds.shape[1]
            embeds = next_embeds
            out.append(codes[0].numpy())
    return np.stack(out)


def fused_sampling_case(rt: Runtime, model, family, frames: int = 12, seed: int = 1234) -> dict:
    s = Sampling(temperature=0.9, top_k=50, top_p=0.8)
    fused = fused_codes(rt, frames, s, seed)
    steps = rt.generate(TEXT, max_frames=frames, sampling=s, seed=seed, decode=False).codes
    ref = torch_frame_codes(model, family, rt, frames, s, seed)
    other = fused_codes(rt, frames, s, seed + 1)
    return {"frames": frames, "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
            "fused_equals_torch": bool(np.array_equal(fused, ref)),
            "fused_equals_step_graphs": bool(np.array_equal(fused, steps)),
            "other_seed_differs": bool(not np.array_equal(fused, other))}
