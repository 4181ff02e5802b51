"""GraphSpecs and contract pieces more than one family declares the same way: an LM step over a flat KV
cache, the KV cache's names in the manifest, and an audio encoder (waveform -> codes). A family states
only what differs (its module, its sizes)."""

from __future__ import annotations

import torch

from voxport.exporter import kv_cache
from voxport.exporter.kv_cache import kv_specs
from voxport.exporter.spec import GraphSpec, TensorSpec, Tolerance
from voxport.exporter.torch_steps import lm_step_inputs, rand_past, static_codec_shapes

F32, I64 = "float32", "int64"
KV_PAST, KV_PRESENT = kv_cache.INPUT, kv_cache.OUTPUT  # name templates (exporter/kv_cache.py)


def kv_cache_contract(config, capacity: int | None = None) -> dict:
    """The manifest's description of a graph's KV cache (runtime/contract.py reads it): its size, the
    name templates of its inputs and outputs, and, given a capacity, the static layout."""
    return kv_cache.contract(config.num_hidden_layers, config.num_key_value_heads, config.head_dim, capacity)


def lm_step_graph(name: str, module, config, vocab: int, long_past: int | None = None) -> GraphSpec:
    """One decoder step over a flat KV cache: embeddings, mask and positions in; last hidden state,
    logits and the grown cache out. Parity cases: an empty and a long past, batch 1 and 3, left padding."""
    n, kvh, hd, h = config.num_hidden_layers, config.num_key_value_heads, config.head_dim, config.hidden_size
    checks = [{"batch": 1, "seq": 7, "past": 0}, {"batch": 3, "seq": 1, "past": 11},
              {"batch": 1, "seq": 1, "past": 0}, {"batch": 2, "seq": 4, "past": 300}]
    if long_past is not None:
        checks.append({"batch": 1, "seq": 1, "past": long_past})
    return GraphSpec(
        name, module,
        inputs=[TensorSpec("inputs_embeds", F32, ("batch", "seq", h)),
                TensorSpec("attention_mask", I64, ("batch", "past_seq")),
                TensorSpec("position_ids", I64, ("batch", "seq")),
                *kv_specs(KV_PAST, n, kvh, hd, "past")],
        outputs=[TensorSpec("last_hidden_state", F32, ("batch", "seq", h)),
                 TensorSpec("logits", F32, ("batch", "seq", vocab)),
                 *kv_specs(KV_PRESENT, n, kvh, hd, "past_seq")],
        make_inputs=lambda s: lm_step_inputs(s, h, n, kvh, hd), export_sizes={"batch": 2, "seq": 3, "past": 5},
        check_sizes=checks,
    )


def code_step_graph(name: str, module, config, hidden_input: str, hidden_size: int, last_past: int) -> GraphSpec:
    """One step of a per-frame code decoder (CSM's depth decoder, Qwen3-TTS's code predictor): code ids
    and the frame's hidden state in, logits and the grown cache out. Parity cases: the two shapes
    generation uses ((hidden, first code) with no past, then one code at a time, up to `last_past`)."""
    n, kvh, hd, vocab = config.num_hidden_layers, config.num_key_value_heads, config.head_dim, config.vocab_size

    def make(s):
        b, q, p = s["batch"], s["seq"], s["past"]
        gen = torch.Generator().manual_seed(b * 10000 + q * 100 + p)
        ids = torch.randint(0, vocab, (b, q), generator=gen)
        hidden = torch.randn(b, hidden_size, generator=gen)
        return [ids, hidden, *rand_past(gen, n, b, kvh, p, hd)]

    return GraphSpec(
        name, module,
        inputs=[TensorSpec("input_ids", I64, ("batch", "seq")),
                TensorSpec(hidden_input, F32, ("batch", hidden_size)),
                *kv_specs(KV_PAST, n, kvh, hd, "past")],
        outputs=[TensorSpec("logits", F32, ("batch", vocab)), *kv_specs(KV_PRESENT, n, kvh, hd, "past_seq")],
        make_inputs=make, export_sizes={"batch": 2, "seq": 2, "past": 3},
        check_sizes=[{"batch": 1, "seq": 2, "past": 0}, {"batch": 3, "seq": 1, "past": 2},
                     {"batch": 1, "seq": 1, "past": last_past}, {"batch": 2, "seq": 1, "past": last_past // 2 + 1}],
    )


def audio_encoder_graph(name: str, module, codebooks: int, frame_size: int, sample_rate: int,
                        codec_module) -> GraphSpec:
    """Waveform [batch, 1, samples] -> codes [batch, codebooks, frames], exact; checked at lengths that
    are and are not whole frames. codec_module: the Mimi model whose shapes are made static for export."""

    def make(s):
        gen = torch.Generator().manual_seed(s["batch"] * 1000 + s["samples"])
        t = torch.arange(s["samples"]) / sample_rate
        tone = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(s["batch"], 1, s["samples"], generator=gen)
        return [tone.expand(s["batch"], 1, -1).contiguous()]

    return GraphSpec(
        name, module,
        inputs=[TensorSpec("input_values", F32, ("batch", 1, "samples"))],
        outputs=[TensorSpec("audio_codes", I64, ("batch", codebooks, "frames"))],
        make_inputs=make, export_sizes={"batch": 2, "samples": 3 * frame_size},
        check_sizes=[{"batch": 1, "samples": 5 * frame_size}, {"batch": 1, "samples": 4 * frame_size + 700},
                     {"batch": 2, "samples": frame_size}],
        tolerance={"audio_codes": Tolerance(exact=True)},
        export_context=lambda: static_codec_shapes(codec_module),
    )
