"""Orpheus's graphs as data (GraphSpecs): the prompt embedding, the fused frame, and SNAC's decoders
(whole utterance, canopy's streaming window, and the stateful stream the runtimes use)."""

from __future__ import annotations

import torch

from voxport.exporter.blocks import unfusable
from voxport.exporter.families.orpheus import codec
from voxport.exporter.families.orpheus.frame import FrameStep, LmStep, build_frame, build_lm_step
from voxport.exporter.families.orpheus.layout import POSITIONS, Layout
from voxport.exporter.families.orpheus.wrappers import Embed, SnacDecode, SnacStream, SnacWindow
from voxport.exporter.shared_graphs import KV_PAST, KV_PRESENT, kv_specs
from voxport.exporter.spec import GraphSpec, TensorSpec, Tolerance
from voxport.exporter.torch_steps import lm_step_inputs

F32, I64 = "float32", "int64"
# the stream graph's window: frames before and after each emitted frame (measured: docs/design.md)
STREAM_CONTEXT, STREAM_LOOKAHEAD = 2, 2
# canopy's window: 4 frames decoded, the second one kept
WINDOW_FRAMES, WINDOW_KEEP = 4, 1


def embed(lm) -> GraphSpec:
    cfg = lm.config

    def make(s):
        gen = torch.Generator().manual_seed(s["batch"] * 100 + s["seq"])
        return [torch.randint(0, cfg.vocab_size, (s["batch"], s["seq"]), generator=gen)]

    return GraphSpec(
        "embed", Embed(lm),
        inputs=[TensorSpec("input_ids", I64, ("batch", "seq"))],
        outputs=[TensorSpec("inputs_embeds", F32, ("batch", "seq", cfg.hidden_size))],
        make_inputs=make, export_sizes={"batch": 2, "seq": 5},
        check_sizes=[{"batch": 1, "seq": 9}, {"batch": 3, "seq": 1}, {"batch": 1, "seq": 1}],
        tolerance={"inputs_embeds": Tolerance(rtol=1e-6)},  # a gather: exact
    )


def frame(lm, layout: Layout) -> GraphSpec:
    """Batch 1 (one stream per session). Written from the weights with fused ops."""
    cfg = lm.config
    why = unfusable(cfg)
    if why:
        raise ValueError(f"the Orpheus frame graph is written with fused ops: {why}")
    n, kvh, hd, h = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
    width = layout.codebook_size + 1

    def make(s):
        embeds, mask, pos, *past = lm_step_inputs({**s, "batch": 1}, h, n, kvh, hd)
        gen = torch.Generator().manual_seed(11 + s["past"])
        noise = torch.rand(1, POSITIONS, width, generator=gen)
        if s.get("stop"):  # position 0's stop id holds the largest uniform: at a high temperature it is drawn
            noise[0, 0] = noise[0, 0] * 0.5
            noise[0, 0, -1] = 1.0 - 1e-7
        seen = (torch.rand(1, POSITIONS, width, generator=gen) < s.get("seen", 0.0)).float()
        return [embeds, mask, pos, torch.tensor(s["temperature"]), torch.tensor(s["top_k"]),
                torch.tensor(s.get("top_p", 1.0)), torch.tensor(s.get("penalty", 1.0)), seen, noise, *past]

    def one(specs):
        return [TensorSpec(t.name, t.dtype, tuple(1 if d == "batch" else d for d in t.shape)) for t in specs]

    c = layout.codebook_size
    return GraphSpec(
        "frame", FrameStep(lm, layout),
        inputs=[TensorSpec("inputs_embeds", F32, (1, "seq", h)), TensorSpec("attention_mask", I64, (1, "past_seq")),
                TensorSpec("position_ids", I64, (1, "seq")), TensorSpec("temperature", F32, ()),
                TensorSpec("top_k", I64, ()), TensorSpec("top_p", F32, ()), TensorSpec("repetition_penalty", F32, ()),
                TensorSpec("seen", F32, (1, POSITIONS, width)), TensorSpec("noise", F32, (1, POSITIONS, width)),
                *one(kv_specs(KV_PAST, n, kvh, hd, "past"))],
        outputs=[TensorSpec("codes", I64, (1, POSITIONS)), TensorSpec("next_embeds", F32, (1, 1, h)),
                 *one(kv_specs(KV_PRESENT, n, kvh, hd, "present"))],
        make_inputs=make, export_sizes={"seq": 3, "past": 5, "temperature": 0.9, "top_k": 50},
        # greedy (with the penalty), sampling with top-k, top-p, the model's settings; prefill and steps
        check_sizes=[{"seq": 7, "past": 0, "temperature": 0.0, "top_k": 1},
                     {"seq": 1, "past": 11, "temperature": 0.0, "top_k": 1, "penalty": 1.3, "seen": 0.5},
                     {"seq": 1, "past": 3, "temperature": 0.9, "top_k": 20},
                     {"seq": 1, "past": 30, "temperature": 0.6, "top_k": c, "top_p": 0.8, "penalty": 1.3,
                      "seen": 0.1},
                     {"seq": 4, "past": 300, "temperature": 1.5, "top_k": c // 2, "top_p": 0.9},
                     {"seq": 1, "past": 9, "temperature": 1000.0, "top_k": c + 1, "stop": True}],
        tolerance={"codes": Tolerance(exact=True)},
        build=lambda inputs, outputs: build_frame(lm, layout, inputs, outputs),
        optimize=False,
    )


def lm_step(lm) -> GraphSpec:
    """The LM alone (batch 1, fused as the frame): the graph the precision gates read the LM by, since
    the frame's own KV holds the tokens it drew."""
    cfg = lm.config
    n, kvh, hd, h = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size

    def one(specs):
        return [TensorSpec(t.name, t.dtype, tuple(1 if d == "batch" else d for d in t.shape)) for t in specs]

    return GraphSpec(
        "lm_step", LmStep(lm),
        inputs=[TensorSpec("inputs_embeds", F32, (1, "seq", h)), TensorSpec("attention_mask", I64, (1, "past_seq")),
                TensorSpec("position_ids", I64, (1, "seq")), *one(kv_specs(KV_PAST, n, kvh, hd, "past"))],
        outputs=[TensorSpec("hidden", F32, (1, 1, h)), *one(kv_specs(KV_PRESENT, n, kvh, hd, "past_seq"))],
        make_inputs=lambda s: lm_step_inputs({**s, "batch": 1}, h, n, kvh, hd),
        export_sizes={"seq": 3, "past": 5},
        check_sizes=[{"seq": 7, "past": 0}, {"seq": 1, "past": 11}, {"seq": 4, "past": 300}],
        build=lambda inputs, outputs: build_lm_step(lm, inputs, outputs), optimize=False,
    )


def _codes_noise(snac, s):
    gen = torch.Generator().manual_seed(s["batch"] * 1000 + s["frames"])
    f = s["frames"]
    codes = torch.randint(0, snac.codebook_size, (s["batch"], POSITIONS, f), generator=gen)
    noise = torch.randn(s["batch"], f, sum(codec.noise_per_frame(snac)), generator=gen)
    return gen, codes, noise


def snac_decoder(snac) -> GraphSpec:
    n = sum(codec.noise_per_frame(snac))

    def make(s):
        return list(_codes_noise(snac, s)[1:])

    return GraphSpec(
        "snac_decoder", SnacDecode(snac),
        inputs=[TensorSpec("audio_codes", I64, ("batch", POSITIONS, "frames")),
                TensorSpec("codec_noise", F32, ("batch", "frames", n))],
        outputs=[TensorSpec("audio_values", F32, ("batch", 1, "samples"))],
        make_inputs=make, export_sizes={"batch": 2, "frames": 3},
        check_sizes=[{"batch": 1, "frames": 1}, {"batch": 1, "frames": 9}, {"batch": 3, "frames": 4},
                     {"batch": 1, "frames": 40}],
    )


def snac_window(snac) -> GraphSpec:
    n = sum(codec.noise_per_frame(snac))

    def make(s):
        return list(_codes_noise(snac, {**s, "frames": WINDOW_FRAMES})[1:])

    return GraphSpec(
        "snac_window", SnacWindow(snac, WINDOW_FRAMES, WINDOW_KEEP),
        inputs=[TensorSpec("audio_codes", I64, ("batch", POSITIONS, WINDOW_FRAMES)),
                TensorSpec("codec_noise", F32, ("batch", WINDOW_FRAMES, n))],
        outputs=[TensorSpec("audio_values", F32, ("batch", 1, codec.samples_per_frame(snac)))],
        make_inputs=make, export_sizes={"batch": 2}, check_sizes=[{"batch": 1}, {"batch": 3}],
    )


def stream_module(snac) -> SnacStream:
    return SnacStream(snac, STREAM_CONTEXT, STREAM_LOOKAHEAD)


def snac_stream(snac) -> GraphSpec:
    module = stream_module(snac)
    n, held = sum(codec.noise_per_frame(snac)), module.held

    def make(s):
        gen, codes, noise = _codes_noise(snac, s)
        # held frames: some empty (0) at the start of a stream, real codes (+1) after
        held_codes = torch.randint(0, snac.codebook_size + 1, (s["batch"], POSITIONS, held), generator=gen)
        if s.get("empty"):
            held_codes[..., : s["empty"]] = 0
        if s.get("flush"):
            codes[...] = -1
        return [codes, noise, held_codes, torch.randn(s["batch"], held, n, generator=gen)]

    return GraphSpec(
        "snac_stream", module,
        inputs=[TensorSpec("audio_codes", I64, ("batch", POSITIONS, "frames")),
                TensorSpec("codec_noise", F32, ("batch", "frames", n)),
                TensorSpec("state_in.codes", I64, ("batch", POSITIONS, held)),
                TensorSpec("state_in.noise", F32, ("batch", held, n))],
        outputs=[TensorSpec("audio_values", F32, ("batch", 1, "samples")),
                 TensorSpec("state_out.codes", I64, ("batch", POSITIONS, held)),
                 TensorSpec("state_out.noise", F32, ("batch", held, n))],
        make_inputs=make, export_sizes={"batch": 2, "frames": 3},
        check_sizes=[{"batch": 1, "frames": 1, "empty": held}, {"batch": 1, "frames": 1, "empty": 1},
                     {"batch": 3, "frames": 5}, {"batch": 1, "frames": 1, "flush": True}],
        tolerance={"state_out.codes": Tolerance(exact=True), "state_out.noise": Tolerance(exact=True)},
    )


def stream_runtime(snac) -> dict:
    """The manifest's `codec_stream`: state from zeros, fed back; per-frame noise drawn by the runtime;
    the first `delay_frames` frames of audio skipped, and the end flushed with that many empty frames."""
    module = stream_module(snac)
    n = sum(codec.noise_per_frame(snac))
    return {"graph": "snac_stream", "initial": "zeros",
            "state": [{"input": "state_in.codes", "output": "state_out.codes", "shape": [POSITIONS, module.held],
                       "dtype": "int64"},
                      {"input": "state_in.noise", "output": "state_out.noise", "shape": [module.held, n],
                       "dtype": "float32"}],
            "noise": {"input": "codec_noise", "per_frame": n, "distribution": "normal"},
            "delay_frames": module.lookahead, "flush_code": -1}
