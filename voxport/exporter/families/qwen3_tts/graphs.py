"""Qwen3-TTS's graphs as GraphSpecs: prompt_embed, talker, code_predictor, frame, and (Base models)
speaker_encoder."""

from __future__ import annotations

import math

import torch

from voxport.exporter.blocks import unfusable
from voxport.exporter.families.qwen3_tts import speaker, wrappers
from voxport.exporter.families.qwen3_tts.frame import FrameStep
from voxport.exporter.families.qwen3_tts.fused import build_frame
from voxport.exporter.spec import GraphSpec, TensorSpec, Tolerance
from voxport.exporter.shared_graphs import code_step_graph, kv_specs, lm_step_graph

F32, I64 = "float32", "int64"


def _one(specs):
    return [TensorSpec(t.name, t.dtype, tuple(1 if d == "batch" else d for d in t.shape)) for t in specs]


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


def frame(model) -> GraphSpec:
    """Batch 1 (one stream per session; batches go through the step graphs). Written from the weights
    with fused ops (fused.build_frame) where the blocks take both stacks' configs (head size a multiple
    of 8, SiLU, no sliding window); else FrameStep traced. FrameStep is the parity reference either way."""
    tc = model.talker.config
    fused = not any(unfusable(c) for c in (tc, tc.code_predictor_config))
    n, kvh, hd, h = tc.num_hidden_layers, tc.num_key_value_heads, tc.head_dim, tc.hidden_size
    g, v = tc.num_code_groups, tc.vocab_size
    step = talker(model)

    def make(s):
        embeds, mask, pos, *past = step.make_inputs({**s, "batch": 1})
        gen = torch.Generator().manual_seed(7 + s["past"])
        seen = (torch.rand(1, v, generator=gen) < 0.05).float()
        bias = torch.zeros(1, v)
        bias[0, v - 1024:] = float("-inf")
        bias[0, tc.codec_eos_token_id] = 0.0
        top_p = torch.tensor(s.get("top_p", 1.0))
        return [embeds, mask, pos, torch.randn(1, 1, h, generator=gen) * 0.5, torch.tensor(s["temperature"]),
                torch.tensor(s["top_k"]), top_p, torch.tensor(s["temperature"]), torch.tensor(s["top_k"]), top_p,
                torch.tensor(s["penalty"]), seen, bias, torch.rand(1, g, v, generator=gen), *past]

    return GraphSpec(
        "frame", FrameStep(model),
        inputs=[*_one(step.inputs[:3]), TensorSpec("text_embed", F32, (1, 1, h)),
                TensorSpec("temperature", F32, ()), TensorSpec("top_k", I64, ()), TensorSpec("top_p", F32, ()),
                TensorSpec("predictor_temperature", F32, ()), TensorSpec("predictor_top_k", I64, ()),
                TensorSpec("predictor_top_p", F32, ()),
                TensorSpec("repetition_penalty", F32, ()), TensorSpec("c0_seen", F32, (1, v)),
                TensorSpec("c0_bias", F32, (1, v)), TensorSpec("noise", F32, (1, g, v)), *_one(step.inputs[3:])],
        outputs=[TensorSpec("codes", I64, (1, g)), TensorSpec("next_embeds", F32, (1, 1, h)),
                 *_one(kv_specs("present", n, kvh, hd, "past_seq"))],
        make_inputs=make, export_sizes={"seq": 3, "past": 5, "temperature": 0.9, "top_k": 50, "penalty": 1.05},
        # greedy, sampling with top-k, with top-p, and the whole vocabulary; prefill and steps
        check_sizes=[{"seq": 7, "past": 0, "temperature": 0.0, "top_k": 1, "penalty": 1.05},
                     {"seq": 1, "past": 11, "temperature": 0.9, "top_k": 50, "penalty": 1.05},
                     {"seq": 1, "past": 30, "temperature": 1.0, "top_k": 64, "penalty": 1.0},
                     {"seq": 1, "past": 9, "temperature": 1.5, "top_k": 64, "penalty": 1.05, "top_p": 0.7},
                     # top_k past tiny's predictor vocabulary (64): clipped to it, as gumbel_choice does
                     {"seq": 1, "past": 2, "temperature": 0.8, "top_k": 100, "penalty": 1.05},
                     {"seq": 4, "past": 300, "temperature": 0.0, "top_k": 50, "penalty": 1.3}],
        tolerance={"codes": Tolerance(exact=True)},
        build=(lambda inputs, outputs: build_frame(model, inputs, outputs)) if fused else None,
        optimize=False,
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
