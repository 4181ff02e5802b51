"""Sesame CSM and Marvis TTS (transformers' CsmForConditionalGeneration): graphs and runtime facts."""

from __future__ import annotations

import torch

from voxport.exporter.families.csm import checkpoint, presets, wrappers
from voxport.exporter.families.csm.frame import FrameStep, build_frame
from voxport.exporter.families.csm.mimi_stream import MimiDecodeStream
from voxport.exporter.blocks import unfusable
from voxport.exporter.families.csm.precision import CSM_PRECISION
from voxport.exporter.spec import Family, GraphSpec, TensorSpec, Tolerance, register
from voxport.exporter.streaming import stream_graph, stream_runtime
from voxport.exporter.torch_steps import kv_specs, lm_step_inputs, rand_past, static_codec_shapes

F32, I64 = "float32", "int64"


@register
class CsmFamily(Family):
    name = "csm"
    model_types = ("csm",)
    presets = presets.PRESETS
    precision = CSM_PRECISION

    @classmethod
    def build_preset(cls, preset, out):
        presets.build_preset(preset, out)

    @classmethod
    def check_dir(cls, path, config):
        checkpoint.check_dir(path)

    @classmethod
    def load(cls, path, device="cpu"):
        return checkpoint.load(path, device)

    def artifact_files(self, out):
        return checkpoint.write_runtime_files(self.source, out)

    def reference_generate(self, text, frames, device):
        from voxport.exporter.families.csm.parity import reference_generate

        return reference_generate(self, text, frames, device)

    def parity(self, rt, ckpt, frames, device, progress):
        from voxport.exporter.families.csm.parity import run

        return run(rt, self, ckpt, frames, device, progress)

    def graphs(self) -> list[GraphSpec]:
        return [self._embed(), self._backbone(), self._depth(), self._frame(), self._mimi_decoder(),
                self._mimi_decoder_stream(), self._mimi_encoder()]

    # -- graphs ---------------------------------------------------------------------------------
    def _embed(self) -> GraphSpec:
        cfg = self.model.config
        k, h = cfg.num_codebooks, cfg.hidden_size

        def make(s):
            gen = torch.Generator().manual_seed(s["batch"] * 100 + s["seq"])
            ids = torch.randint(0, cfg.text_vocab_size, (s["batch"], s["seq"]), generator=gen)
            ids[:, ::3] = cfg.audio_token_id  # mix text and audio positions
            ids[:, -1] = cfg.audio_eos_token_id
            codes = torch.randint(0, cfg.vocab_size, (s["batch"], s["seq"], k), generator=gen)
            return [ids, codes]

        return GraphSpec(
            "embed", wrappers.Embed(self.model),
            inputs=[TensorSpec("input_ids", I64, ("batch", "seq")),
                    TensorSpec("audio_codes", I64, ("batch", "seq", k))],
            outputs=[TensorSpec("inputs_embeds", F32, ("batch", "seq", h))],
            make_inputs=make, export_sizes={"batch": 2, "seq": 5},
            check_sizes=[{"batch": 1, "seq": 9}, {"batch": 3, "seq": 1}, {"batch": 1, "seq": 1}],
            tolerance={"inputs_embeds": Tolerance(rtol=1e-6)},  # a gather and a sum: near exact
        )

    def _backbone(self) -> GraphSpec:
        cfg = self.model.config
        n, kvh, hd, h = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size

        def make(s):
            return lm_step_inputs(s, h, n, kvh, hd)

        return GraphSpec(
            "backbone", wrappers.BackboneStep(self.model),
            inputs=[TensorSpec("inputs_embeds", F32, ("batch", "seq", h)),
                    TensorSpec("attention_mask", I64, ("batch", "past_seq")),
                    TensorSpec("position_ids", I64, ("batch", "seq")),
                    *kv_specs("past_key_values", n, kvh, hd, "past")],
            outputs=[TensorSpec("last_hidden_state", F32, ("batch", "seq", h)),
                     TensorSpec("logits", F32, ("batch", "seq", cfg.vocab_size)),
                     *kv_specs("present", n, kvh, hd, "past_seq")],
            make_inputs=make, export_sizes={"batch": 2, "seq": 3, "past": 5},
            check_sizes=[{"batch": 1, "seq": 7, "past": 0}, {"batch": 3, "seq": 1, "past": 11},
                         {"batch": 1, "seq": 1, "past": 0}, {"batch": 2, "seq": 4, "past": 300},
                         {"batch": 1, "seq": 1, "past": min(cfg.max_position_embeddings - 1, 1000)}],
        )

    def _depth(self) -> GraphSpec:
        cfg = self.model.config
        dcfg = self.model.depth_decoder.config
        n, kvh, hd = dcfg.num_hidden_layers, dcfg.num_key_value_heads, dcfg.head_dim
        k = cfg.num_codebooks

        def make(s):
            b, q, p = s["batch"], s["seq"], s["past"]
            gen = torch.Generator().manual_seed(b * 10000 + q * 100 + p)
            ids = torch.randint(0, dcfg.vocab_size, (b, q), generator=gen)
            hidden = torch.randn(b, cfg.hidden_size, generator=gen)
            return [ids, hidden, *rand_past(gen, n, b, kvh, p, hd)]

        return GraphSpec(
            "depth", wrappers.DepthStep(self.model),
            inputs=[TensorSpec("input_ids", I64, ("batch", "seq")),
                    TensorSpec("backbone_last_hidden_state", F32, ("batch", cfg.hidden_size)),
                    *kv_specs("past_key_values", n, kvh, hd, "past")],
            outputs=[TensorSpec("logits", F32, ("batch", dcfg.vocab_size)),
                     *kv_specs("present", n, kvh, hd, "past_seq")],
            make_inputs=make, export_sizes={"batch": 2, "seq": 2, "past": 3},
            # the two shapes generation uses: (hidden, c0) with no past, then one code at a time
            check_sizes=[{"batch": 1, "seq": 2, "past": 0}, {"batch": 3, "seq": 1, "past": 2},
                         {"batch": 1, "seq": 1, "past": k - 2}, {"batch": 2, "seq": 1, "past": k // 2}],
        )

    def _frame(self) -> GraphSpec:
        """Batch 1 (one stream per session; batches go through the step graphs). Written from the
        weights with fused ops (frame.build_frame); FrameStep is its PyTorch reference."""
        cfg = self.model.config
        fused = not any(unfusable(c) for c in (cfg, self.model.depth_decoder.config))
        n, kvh, hd, h = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
        k, v = cfg.num_codebooks, cfg.vocab_size
        backbone = self._backbone()

        def one(specs):
            return [TensorSpec(t.name, t.dtype, tuple(1 if d == "batch" else d for d in t.shape)) for t in specs]

        def make(s):
            embeds, mask, pos, *past = backbone.make_inputs({**s, "batch": 1})
            gen = torch.Generator().manual_seed(7 + s["past"])
            noise = torch.rand(1, k, v, generator=gen)
            return [embeds, mask, pos, torch.tensor(s["temperature"]), torch.tensor(s["top_k"]),
                    torch.tensor(s.get("top_p", 1.0)), noise, *past]

        return GraphSpec(
            "frame", FrameStep(self.model),
            inputs=[*one(backbone.inputs[:3]), TensorSpec("temperature", F32, ()), TensorSpec("top_k", I64, ()),
                    TensorSpec("top_p", F32, ()), TensorSpec("noise", F32, (1, k, v)), *one(backbone.inputs[3:])],
            outputs=[TensorSpec("codes", I64, (1, k)), TensorSpec("next_embeds", F32, (1, 1, h)),
                     *one(kv_specs("present", n, kvh, hd, "past_seq"))],
            make_inputs=make, export_sizes={"seq": 3, "past": 5, "temperature": 0.9, "top_k": 50},
            # greedy, sampling with top-k, with top-p, and the whole vocabulary; prefill and steps
            check_sizes=[{"seq": 7, "past": 0, "temperature": 0.0, "top_k": 1},
                         {"seq": 1, "past": 11, "temperature": 0.9, "top_k": 50},
                         {"seq": 1, "past": 3, "temperature": 1.5, "top_k": 200, "top_p": 0.8},
                         {"seq": 1, "past": 30, "temperature": 1.0, "top_k": v},
                         {"seq": 4, "past": 300, "temperature": 0.0, "top_k": 50}],
            tolerance={"codes": Tolerance(exact=True)},
            # written with fused ops where the blocks take the config (head size a multiple of 8, SiLU:
            # every released checkpoint); else FrameStep traced, as before
            build=(lambda inputs, outputs: build_frame(self.model, inputs, outputs)) if fused else None,
            optimize=not fused,
        )

    def _mimi_decoder_stream(self) -> GraphSpec:
        cfg = self.model.config
        # Mimi's decoder transformer keeps 250 steps (2 per frame) in its window
        return stream_graph("mimi_decoder_stream", MimiDecodeStream(self.model), cfg.num_codebooks, cfg.vocab_size,
                            int(cfg.codec_config.sliding_window))

    def _mimi_decoder(self) -> GraphSpec:
        cfg = self.model.config
        k, fs = cfg.num_codebooks, self.frame_size

        def make(s):
            gen = torch.Generator().manual_seed(s["batch"] * 1000 + s["frames"])
            return [torch.randint(0, cfg.vocab_size, (s["batch"], k, s["frames"]), generator=gen)]

        return GraphSpec(
            "mimi_decoder", wrappers.MimiDecode(self.model),
            inputs=[TensorSpec("audio_codes", I64, ("batch", k, "frames"))],
            outputs=[TensorSpec("audio_values", F32, ("batch", 1, "samples"))],
            make_inputs=make, export_sizes={"batch": 2, "frames": 3},
            check_sizes=[{"batch": 1, "frames": 1}, {"batch": 1, "frames": 9}, {"batch": 3, "frames": 4},
                         {"batch": 1, "frames": 60}],
            export_context=lambda: static_codec_shapes(self.model.codec_model),
        )

    def _mimi_encoder(self) -> GraphSpec:
        cfg = self.model.config
        k, fs = cfg.num_codebooks, self.frame_size

        def make(s):
            gen = torch.Generator().manual_seed(s["batch"] * 1000 + s["samples"])
            t = torch.arange(s["samples"]) / self.sample_rate
            tone = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(s["batch"], 1, s["samples"], generator=gen)
            return [tone.expand(s["batch"], 1, -1).contiguous()]

        return GraphSpec(
            "mimi_encoder", wrappers.MimiEncode(self.model),
            inputs=[TensorSpec("input_values", F32, ("batch", 1, "samples"))],
            outputs=[TensorSpec("audio_codes", I64, ("batch", k, "frames"))],
            make_inputs=make, export_sizes={"batch": 2, "samples": 3 * fs},
            check_sizes=[{"batch": 1, "samples": 5 * fs}, {"batch": 1, "samples": 4 * fs + 700},
                         {"batch": 2, "samples": fs}],
            tolerance={"audio_codes": Tolerance(exact=True)},
            export_context=lambda: static_codec_shapes(self.model.codec_model),
        )

    # -- runtime facts ----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.model.config.codec_config.sampling_rate)

    @property
    def frame_size(self) -> int:
        return int(self.model.config.codec_config.frame_size)

    def _generation(self) -> dict:
        """The frame graph's contract (voxport/runtime/contract.py): one sampling group over every codebook,
        and transformers' stop rule: a frame whose codebooks but the last are all eos ends the utterance."""
        cfg, dcfg = self.model.config, self.model.depth_decoder.config
        k, v = cfg.num_codebooks, cfg.vocab_size

        def cache(c):
            return {"layers": c.num_hidden_layers, "kv_heads": c.num_key_value_heads, "head_dim": c.head_dim,
                    "kv": ["key", "value"], "input": "past_key_values.{layer}.{kv}", "output": "present.{layer}.{kv}"}

        return {
            "frame": {"graph": "frame", "codes": "codes", "noise": "noise",
                      "embeds": {"input": "inputs_embeds", "output": "next_embeds"},
                      "attention_mask": "attention_mask", "position_ids": "position_ids", "cache": cache(cfg)},
            "codebooks": k, "noise_vocab": v,
            "sampling": [{"name": "codebooks", "codebooks": [0, k], "vocab": v,
                          "inputs": {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p"},
                          "defaults": self._sampling_defaults()}],
            "stop": {"codebooks": [0, k - 1], "token": cfg.codebook_eos_token_id},
            "prompt": {"format": "chat_template", "graph": "embed", "ids": "input_ids", "codes": "audio_codes",
                       "codebooks": k, "audio_token": "<|AUDIO|>", "audio_token_id": cfg.audio_token_id,
                       "audio_eos_token_id": cfg.audio_eos_token_id,
                       "audio_eos_frame_token": cfg.codebook_eos_token_id},
            # the chat template takes any integer as a speaker id; CSM and Marvis are trained on
            # two-party conversations, speakers 0 and 1, which is what a server lists
            "speakers": {"kind": "integer", "names": ["0", "1"]},
            "codec": {"decoder": "mimi_decoder", "encoder": "mimi_encoder", "stream": "mimi_decoder_stream"},
            "steps": {
                "embed": {"graph": "embed", "ids": "input_ids", "codes": "audio_codes",
                          "frame_token": cfg.audio_token_id},
                "backbone": {"graph": "backbone", "embeds": "inputs_embeds", "attention_mask": "attention_mask",
                             "position_ids": "position_ids", "cache": cache(cfg)},
                "depth": {"graph": "depth", "ids": "input_ids", "hidden": "backbone_last_hidden_state",
                          "cache": cache(dcfg)}},
        }

    def _sampling_defaults(self) -> dict:
        """The model's sampling settings for runtimes that take none from the caller: the checkpoint's
        generation_config where it samples, else temperature 0.9 and top-k 50 (`voxport speak`'s)."""
        g = self.model.generation_config
        if getattr(g, "do_sample", False):
            return {"temperature": float(g.temperature), "top_k": int(g.top_k)}
        return {"temperature": 0.9, "top_k": 50}

    def runtime_config(self) -> dict:
        cfg, dcfg = self.model.config, self.model.depth_decoder.config
        return {
            "family": self.name,
            "num_codebooks": cfg.num_codebooks,
            "codebook_vocab": cfg.vocab_size,
            "codec_codebook_size": int(cfg.codec_config.codebook_size),
            "codebook_eos_token_id": cfg.codebook_eos_token_id,
            "codebook_pad_token_id": cfg.codebook_pad_token_id,
            "text_vocab_size": cfg.text_vocab_size,
            "bos_token_id": cfg.bos_token_id,
            "audio_token_id": cfg.audio_token_id,
            "audio_eos_token_id": cfg.audio_eos_token_id,
            "max_positions": cfg.max_position_embeddings,
            "backbone": {"layers": cfg.num_hidden_layers, "kv_heads": cfg.num_key_value_heads,
                         "head_dim": cfg.head_dim, "hidden": cfg.hidden_size},
            "depth": {"layers": dcfg.num_hidden_layers, "kv_heads": dcfg.num_key_value_heads,
                      "head_dim": dcfg.head_dim, "hidden": dcfg.hidden_size},
            "sample_rate": self.sample_rate,
            "frame_size": self.frame_size,
            "frame_rate": float(cfg.codec_config.frame_rate),
            "generation": self._generation(),
            # the streaming codec's state: a runtime starts from zeros of these and feeds back each output
            "codec_stream": stream_runtime("mimi_decoder_stream", MimiDecodeStream(self.model)),
        }
