"""CSM / Marvis graphs as GraphSpecs: embed, backbone, depth (the step graphs), frame (the fused
per-frame graph), and Mimi's decoder, streaming decoder and encoder."""

from __future__ import annotations

import torch

from voxport.exporter import kv_cache
from voxport.exporter.kernels import fusable
from voxport.exporter.families.csm import wrappers
from voxport.exporter.families.csm.codec import MimiDecodeStream
from voxport.exporter.families.csm.frame import FrameStep, build_frame
from voxport.exporter.spec import GraphSpec, TensorSpec, Tolerance, capture_twin
from voxport.exporter.streaming import stream_graph
from voxport.exporter.shared_graphs import audio_encoder_graph, code_step_graph, lm_step_graph
from voxport.exporter.torch_steps import static_codec_shapes, static_step_inputs

F32, I64 = "float32", "int64"


def all_graphs(model) -> list[GraphSpec]:
    return [embed(model), backbone(model), depth(model), frame(model), *frame_capture(model), mimi_decoder(model),
            mimi_decoder_stream(model), mimi_encoder(model)]


def sample_rate(model) -> int:
    return int(model.config.codec_config.sampling_rate)


def frame_size(model) -> int:
    return int(model.config.codec_config.frame_size)


def embed(model) -> GraphSpec:
    cfg = model.config
    k, h = cfg.num_codebooks, cfg.hidden_size

    def make(s):
        gen = torch.Generator().manual_seed(s["batch"] * 100 + s["seq"])
        ids = torch.randint(0, cfg.text_vocab_size, (s["batch"], s["seq"]), generator=gen)
        ids[:, ::3] = cfg.audio_token_id  # mix text and audio positions
        ids[:, -1] = cfg.audio_eos_token_id
        codes = torch.randint(0, cfg.vocab_size, (s["batch"], s["seq"], k), generator=gen)
        return [ids, codes]

    return GraphSpec(
        "embed", wrappers.Embed(model),
        inputs=[TensorSpec("input_ids", I64, ("batch", "seq")),
                TensorSpec("audio_codes", I64, ("batch", "seq", k))],
        outputs=[TensorSpec("inputs_embeds", F32, ("batch", "seq", h))],
        make_inputs=make, export_sizes={"batch": 2, "seq": 5},
        check_sizes=[{"batch": 1, "seq": 9}, {"batch": 3, "seq": 1}, {"batch": 1, "seq": 1}],
        tolerance={"inputs_embeds": Tolerance(rtol=1e-6)},  # a gather and a sum: near exact
    )


def backbone(model) -> GraphSpec:
    cfg = model.config
    return lm_step_graph("backbone", wrappers.BackboneStep(model), cfg, cfg.vocab_size,
                         long_past=min(cfg.max_position_embeddings - 1, 1000))


def depth(model) -> GraphSpec:
    cfg = model.config
    return code_step_graph("depth", wrappers.DepthStep(model), model.depth_decoder.config,
                           "backbone_last_hidden_state", cfg.hidden_size, cfg.num_codebooks - 2)


def frame(model) -> GraphSpec:
    """One call per frame for every stream in the batch (rows), the backbone KV in static buffers
    (exporter/kv_cache.py). Written from the weights with fused ops (frame.build_frame) where the
    kernels take the config (exporter/kernels.py); else FrameStep traced. FrameStep is its PyTorch
    reference either way."""
    cfg = model.config
    fused = fusable(cfg, model.depth_decoder.config)
    n, kvh, hd, h = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
    k, v = cfg.num_codebooks, cfg.vocab_size

    def make(s):
        embeds, lengths, *past = static_step_inputs(s, h, n, kvh, hd)
        rows = len(s["past"])
        gen = torch.Generator().manual_seed(7 + sum(s["past"]))
        noise = torch.rand(rows, k, v, generator=gen)

        def per_row(x, dtype):
            return torch.tensor(x if isinstance(x, list) else [x] * rows, dtype=dtype)
        return [embeds, lengths, per_row(s["temperature"], torch.float32), per_row(s["top_k"], torch.long),
                per_row(s.get("top_p", 1.0), torch.float32), noise, *past]

    return GraphSpec(
        "frame", FrameStep(model),
        inputs=[TensorSpec("inputs_embeds", F32, ("batch", "seq", h)), TensorSpec(kv_cache.LENGTHS, I64, ("batch",)),
                TensorSpec("temperature", F32, ("batch",)), TensorSpec("top_k", I64, ("batch",)),
                TensorSpec("top_p", F32, ("batch",)), TensorSpec("noise", F32, ("batch", k, v)),
                *kv_cache.kv_specs(kv_cache.INPUT, n, kvh, hd, "capacity")],
        outputs=[TensorSpec("codes", I64, ("batch", k)), TensorSpec("next_embeds", F32, ("batch", 1, h)),
                 *kv_cache.kv_specs(kv_cache.OUTPUT, n, kvh, hd, "capacity")],
        make_inputs=make,
        export_sizes={"seq": 3, "past": [5, 2], "capacity": 16, "temperature": 0.9, "top_k": 50},
        # greedy, sampling with top-k, with top-p, and the whole vocabulary; prefill and steps; rows
        # of different lengths, each with its own settings
        check_sizes=[{"seq": 7, "past": [0], "capacity": 12, "temperature": 0.0, "top_k": 1},
                     {"seq": 1, "past": [11], "capacity": 40, "temperature": 0.9, "top_k": 50},
                     {"seq": 1, "past": [3], "capacity": 8, "temperature": 1.5, "top_k": 200, "top_p": 0.8},
                     {"seq": 1, "past": [30], "capacity": 31, "temperature": 1.0, "top_k": v},
                     {"seq": 4, "past": [300], "capacity": 320, "temperature": 0.0, "top_k": 50},
                     {"seq": 1, "past": [5, 17, 40], "capacity": 64, "temperature": [0.0, 0.9, 1.2],
                      "top_k": [50, 1, 200], "top_p": [1.0, 1.0, 0.7]}],
        tolerance={"codes": Tolerance(exact=True)},
        build=(lambda inputs, outputs: build_frame(model, inputs, outputs)) if fused else None,
        optimize=False,  # traced: 31 unrolled depth steps, past what the rewriter takes (spec.py)
        inplace=kv_cache.inplace(n), valid_positions=kv_cache.valid_positions("inputs_embeds"),
    )


def frame_capture(model) -> list[GraphSpec]:
    """The frame graph WebGPU captures (spec.capture_twin), where the frame is written with fused ops."""
    if not fusable(model.config, model.depth_decoder.config):
        return []
    return [capture_twin(frame(model), lambda inputs, outputs: build_frame(model, inputs, outputs, capture=True))]


def mimi_decoder_stream(model) -> GraphSpec:
    cfg = model.config
    # Mimi's decoder transformer keeps 250 steps (2 per frame) in its window
    return stream_graph("mimi_decoder_stream", MimiDecodeStream(model), cfg.num_codebooks, cfg.vocab_size,
                        int(cfg.codec_config.sliding_window))


def mimi_decoder(model) -> GraphSpec:
    cfg = model.config
    k, _fs = cfg.num_codebooks, frame_size(model)

    def make(s):
        gen = torch.Generator().manual_seed(s["batch"] * 1000 + s["frames"])
        return [torch.randint(0, cfg.vocab_size, (s["batch"], k, s["frames"]), generator=gen)]

    return GraphSpec(
        "mimi_decoder", wrappers.MimiDecode(model),
        inputs=[TensorSpec("audio_codes", I64, ("batch", k, "frames"))],
        outputs=[TensorSpec("audio_values", F32, ("batch", 1, "samples"))],
        make_inputs=make, export_sizes={"batch": 2, "frames": 3},
        check_sizes=[{"batch": 1, "frames": 1}, {"batch": 1, "frames": 9}, {"batch": 3, "frames": 4},
                     {"batch": 1, "frames": 60}],
        export_context=lambda: static_codec_shapes(model.codec_model),
    )


def mimi_encoder(model) -> GraphSpec:
    return audio_encoder_graph("mimi_encoder", wrappers.MimiEncode(model), model.config.num_codebooks,
                               frame_size(model), sample_rate(model), model.codec_model)
