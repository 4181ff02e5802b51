"""CSM / Marvis end-to-end parity cases: the ONNX runtime against transformers' own generate, codec
and streaming decode, on one reference model (the graphs were checked shape by shape before this)."""

from __future__ import annotations

import time


def run(rt, family, ckpt, frames: int, device: str, progress) -> tuple[dict, list[str]]:
    model = family.model
    from transformers import AutoProcessor

    from voxport.validation import e2e, streaming

    processor = AutoProcessor.from_pretrained(ckpt.path)
    progress(f"parity: greedy generation, {frames} frames, ONNX vs transformers.generate")
    greedy, codes = e2e.greedy_case(rt, model, processor, frames, device)
    progress("parity: waveform, ONNX Mimi decoder vs PyTorch on the generated codes")
    wave = e2e.waveform_case(rt, model, codes, device)
    progress("parity: voice prompt (context utterance through the Mimi encoder graph)")
    voice = e2e.voice_prompt_case(rt, model, processor, max(10, frames // 2), device)
    progress("parity: sampling reproducibility")
    sampling = e2e.sampling_case(rt)
    progress(f"parity: fused frame graph, {frames} greedy frames vs transformers and the step graphs")
    fused = streaming.fused_greedy_case(rt, codes, frames)
    progress("parity: fused frame graph sampling, same noise as PyTorch and the step graphs")
    fused_sampling = streaming.fused_sampling_case(rt, model, family)
    progress("parity: streaming Mimi decode (chunks of 1, 2, 3, 7 frames) vs batch decode")
    stream = streaming.stream_decode_case(rt, lambda codes: _decode(model, codes, device),
                                          rt.rt["codec_codebook_size"])
    progress("parity: utterance joins in long text")
    joins = streaming.join_case(rt)

    failures = []
    if not greedy["identical"]:
        failures.append(f"greedy generation: codes differ from transformers at frame {greedy['first_mismatch_frame']}"
                        f" ({greedy['frames_onnx']} vs {greedy['frames_reference']} frames)")
    if not wave["ok"]:
        failures.append(f"waveform: relative error {wave['rel']:.3g} > {wave['allowed_rel']}")
    if not voice["identical"]:
        failures.append(f"voice prompt: codes differ from transformers at frame {voice['first_mismatch_frame']}")
    if not (sampling["reproducible"] and sampling["other_seed_differs"]):
        failures.append(f"sampling: not reproducible from the seed ({sampling})")
    if not (fused["identical"] and fused["identical_to_step_graphs"]):
        failures.append(f"fused frame graph: greedy codes differ (from transformers at frame "
                        f"{fused['first_mismatch_frame']}; equal to step graphs: {fused['identical_to_step_graphs']})")
    if not (fused_sampling["fused_equals_torch"] and fused_sampling["fused_equals_step_graphs"]
            and fused_sampling["other_seed_differs"]):
        failures.append(f"fused frame graph sampling with the same noise: {fused_sampling}")
    if not stream["ok"]:
        failures.append(f"streaming decode: relative error {stream['worst_rel']:.3g} > {stream['allowed_rel']}")
    if not joins["ok"]:
        failures.append(f"utterance join: step {joins['join_step_max']} > largest step inside {joins['inside_step_max']}")
    return {"greedy": greedy, "waveform": wave, "voice_prompt": voice, "sampling": sampling, "fused": fused,
            "fused_sampling": fused_sampling, "stream_decode": stream, "joins": joins}, failures


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
    from transformers import AutoProcessor

    model = family.model
    processor = AutoProcessor.from_pretrained(family.source)
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
