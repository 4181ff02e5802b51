"""Qwen3-TTS's graphs as GraphSpecs: prompt_embed, talker, code_predictor, frame, and (Base models)
speaker_encoder."""

from __future__ import annotations

import math

import torch

from voxport.exporter import kv_cache
from voxport.exporter.kernels import fusable
from voxport.exporter.families.qwen3_tts import speaker, wrappers
from voxport.exporter.families.qwen3_tts.frame import FrameStep
from voxport.exporter.families.qwen3_tts.fused import build_frame
from voxport.exporter.spec import GraphSpec, TensorSpec, Tolerance, capture_twin
from voxport.exporter.shared_graphs import code_step_graph, kv_specs, lm_step_graph
from voxport.exporter.torch_steps import static_step_inputs

F32, I64 = "float32", "int64"


def prompt_embed(model) -> GraphSpec:
    tc = model.talker.config
    g, h = tc.num_code_groups, tc.hidden_size
    vp = tc.code_predictor_config.vocab_size

    def make(s):
        gen = torch.Generator().manual_seed(s["batch"] * 100 + s["seq"])
        b, n = s["batch"], s["seq"]
        text = torch.randint(0, tc.text_vocab_size, (b, n), generator=gen)
        text[:, ::3] = wrappers.NONE  # codec-only positions
        codec = torch.randint(0, vp, (b, n, g), generator=gen)
        codec[:, 1::3, 0] = torch.randint(vp, tc.vocab_size, (b, len(range(1, n, 3))), generator=gen)  # specials
        codec[:, 1::3, 1:] = wrappers.NONE
        codec[:, 2::3] = wrappers.NONE  # text-only positions
        if n > 3:
            text[:, -1], codec[:, -1] = wrappers.NONE, wrappers.NONE  # neither: zero
        return [text, codec]

    return GraphSpec(
        "prompt_embed", wrappers.PromptEmbed(model),
        inputs=[TensorSpec("text_ids", I64, ("batch", "seq")), TensorSpec("codec_ids", I64, ("batch", "seq", g))],
        outputs=[TensorSpec("inputs_embeds", F32, ("batch", "seq", h))],
        make_inputs=make, export_sizes={"batch": 2, "seq": 5},
        check_sizes=[{"batch": 1, "seq": 9}, {"batch": 3, "seq": 1}, {"batch": 1, "seq": 1}, {"batch": 1, "seq": 40}],
        tolerance={"inputs_embeds": Tolerance(rtol=1e-6)},
    )


def talker(model) -> GraphSpec:
    tc = model.talker.config
    return lm_step_graph("talker", wrappers.TalkerStep(model), tc, tc.vocab_size)


def code_predictor(model) -> GraphSpec:
    tc = model.talker.config
    return code_step_graph("code_predictor", wrappers.CodePredictorStep(model), tc.code_predictor_config,
                           "talker_hidden_state", tc.hidden_size, tc.num_code_groups - 1)


def frame_capture(model) -> list[GraphSpec]:
    """The frame graph WebGPU captures (spec.capture_twin), where the frame is written with fused ops."""
    tc = model.talker.config
    if not fusable(tc, tc.code_predictor_config):
        return []
    return [capture_twin(frame(model), lambda inputs, outputs: build_frame(model, inputs, outputs, capture=True))]


def frame(model) -> GraphSpec:
    """One call per frame for every stream in the batch (rows), the talker's KV in static buffers
    (exporter/kv_cache.py). Written from the weights with fused ops (fused.build_frame) where the
    kernels take both stacks' configs (exporter/kernels.py); else FrameStep traced. FrameStep is the
    parity reference either way."""
    tc = model.talker.config
    fused = fusable(tc, tc.code_predictor_config)
    n, kvh, hd, h = tc.num_hidden_layers, tc.num_key_value_heads, tc.head_dim, tc.hidden_size
    g, v = tc.num_code_groups, tc.vocab_size

    def make(s):
        embeds, lengths, *past = static_step_inputs(s, h, n, kvh, hd)
        rows = len(s["past"])
        gen = torch.Generator().manual_seed(7 + sum(s["past"]))
        seen = (torch.rand(rows, v, generator=gen) < 0.05).float()
        bias = torch.zeros(rows, v)
        bias[:, v - 1024:] = float("-inf")
        bias[:, tc.codec_eos_token_id] = 0.0

        def per_row(x, dtype=torch.float32):
            return torch.tensor(x if isinstance(x, list) else [x] * rows, dtype=dtype)
        t, k, p = per_row(s["temperature"]), per_row(s["top_k"], torch.long), per_row(s.get("top_p", 1.0))
        return [embeds, lengths, torch.randn(rows, 1, h, generator=gen) * 0.5, t, k, p, t, k, p,
                per_row(s["penalty"]), seen, bias, torch.rand(rows, g, v, generator=gen), *past]

    per_row = ("batch",)
    return GraphSpec(
        "frame", FrameStep(model),
        inputs=[TensorSpec("inputs_embeds", F32, ("batch", "seq", h)), TensorSpec(kv_cache.LENGTHS, I64, per_row),
                TensorSpec("text_embed", F32, ("batch", 1, h)),
                TensorSpec("temperature", F32, per_row), TensorSpec("top_k", I64, per_row),
                TensorSpec("top_p", F32, per_row), TensorSpec("predictor_temperature", F32, per_row),
                TensorSpec("predictor_top_k", I64, per_row), TensorSpec("predictor_top_p", F32, per_row),
                TensorSpec("repetition_penalty", F32, per_row), TensorSpec("c0_seen", F32, ("batch", v)),
                TensorSpec("c0_bias", F32, ("batch", v)), TensorSpec("noise", F32, ("batch", g, v)),
                *kv_specs(kv_cache.INPUT, n, kvh, hd, "capacity")],
        outputs=[TensorSpec("codes", I64, ("batch", g)), TensorSpec("next_embeds", F32, ("batch", 1, h)),
                 *kv_specs(kv_cache.OUTPUT, n, kvh, hd, "capacity")],
        make_inputs=make,
        export_sizes={"seq": 3, "past": [5, 2], "capacity": 16, "temperature": 0.9, "top_k": 50, "penalty": 1.05},
        # greedy, sampling with top-k, with top-p, and the whole vocabulary; prefill and steps; rows of
        # different lengths, each with its own settings
        check_sizes=[{"seq": 7, "past": [0], "capacity": 12, "temperature": 0.0, "top_k": 1, "penalty": 1.05},
                     {"seq": 1, "past": [11], "capacity": 40, "temperature": 0.9, "top_k": 50, "penalty": 1.05},
                     {"seq": 1, "past": [30], "capacity": 31, "temperature": 1.0, "top_k": 64, "penalty": 1.0},
                     {"seq": 1, "past": [9], "capacity": 10, "temperature": 1.5, "top_k": 64, "penalty": 1.05,
                      "top_p": 0.7},
                     # top_k past tiny's predictor vocabulary (64): clipped to it, as gumbel_choice does
                     {"seq": 1, "past": [2], "capacity": 8, "temperature": 0.8, "top_k": 100, "penalty": 1.05},
                     {"seq": 4, "past": [300], "capacity": 320, "temperature": 0.0, "top_k": 50, "penalty": 1.3},
                     {"seq": 1, "past": [5, 17, 40], "capacity": 64, "temperature": [0.0, 0.9, 1.2],
                      "top_k": [50, 1, 30], "top_p": [1.0, 1.0, 0.7], "penalty": [1.05, 1.0, 1.3]}],
        tolerance={"codes": Tolerance(exact=True)},
        build=(lambda inputs, outputs: build_frame(model, inputs, outputs)) if fused else None,
        optimize=False,
        inplace=kv_cache.inplace(n), valid_positions=kv_cache.valid_positions("inputs_embeds"),
    )


def voice_like(samples: int, seed: int = 0) -> torch.Tensor:
    """[1, samples] at 24 kHz, deterministic: a harmonic tone gliding 120 -> 220 Hz (five partials,
    1/k amplitudes, peak below 1) plus a little white noise, the kind of signal a voice prompt is."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(samples, dtype=torch.float64) / speaker.SAMPLE_RATE
    f0 = 120.0 + 100.0 * t / max(float(t[-1]), 1e-9)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / speaker.SAMPLE_RATE
    tone = sum(torch.sin(k * phase) / k for k in range(1, 6)) * 0.3
    return (tone + 0.01 * torch.randn(samples, generator=gen, dtype=torch.float64)).float().unsqueeze(0)


def speaker_encoder(model) -> GraphSpec:
    """Base models only: waveform [1, samples] (24 kHz mono) -> x-vector [1, D], log-mel inside.
    samples >= speaker.min_samples(config) (5 hops on the released encoder: 1280)."""
    d = model.config.speaker_encoder_config.enc_dim

    def make(s):
        return [voice_like(s["samples"], seed=s["samples"])]

    # ONNX vs this wrapper, relative to max |x-vector|: measured 3.0e-7 (tiny), 9.1e-7 (released dimensions,
    # random weights). The wrapper vs the reference's extract_speaker_embedding (torch.stft front end):
    # tests/test_qwen_speaker.py, 3.9e-7 on tiny.
    return GraphSpec(
        "speaker_encoder", speaker.SpeakerEncode(model),
        inputs=[TensorSpec("input_values", F32, (1, "samples"))],
        outputs=[TensorSpec("speaker_embedding", F32, (1, d))],
        make_inputs=make, export_sizes={"samples": 24000},
        # 2.3 s, 0.7 s + 1 (odd), the shortest input + 3, a length that is not a whole number of hops
        check_sizes=[{"samples": 55200}, {"samples": 16801}, {"samples": speaker.min_samples(
            model.config.speaker_encoder_config) + 3}, {"samples": 7777}],
        tolerance={"speaker_embedding": Tolerance(rtol=1e-5)},
    )
