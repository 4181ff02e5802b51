"""Sesame CSM and Marvis TTS (transformers' CsmForConditionalGeneration): graphs and runtime facts."""

from __future__ import annotations

from voxport.exporter.families.csm import checkpoint, graphs, original, presets
from voxport.exporter.families.csm.codec import MimiDecodeStream
from voxport.exporter.families.csm.precision import CSM_PRECISION
from voxport.exporter.shared_graphs import kv_cache_contract
from voxport.exporter.spec import Family, GraphSpec, capture_entry, register
from voxport.exporter.streaming import stream_runtime


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
    def claims(cls, config):
        # transformers' layout by its model_type; the original one (config naming torchtune flavours) has none
        return super().claims(config) or original.is_original(config)

    @classmethod
    def check_dir(cls, path, config):
        checkpoint.check_dir(path, config)

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
        return graphs.all_graphs(self.model)

    # -- runtime facts ----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return graphs.sample_rate(self.model)

    @property
    def frame_size(self) -> int:
        return graphs.frame_size(self.model)

    def _generation(self) -> dict:
        """The frame graph's contract (voxport/runtime/contract.py): one sampling group over every codebook,
        and transformers' stop rule: a frame whose codebooks but the last are all eos ends the utterance."""
        cfg, dcfg = self.model.config, self.model.depth_decoder.config
        k, v = cfg.num_codebooks, cfg.vocab_size


        return {
            "frame": {"graph": "frame", "codes": "codes", "noise": "noise",
                      "embeds": {"input": "inputs_embeds", "output": "next_embeds"},
                      "cache": kv_cache_contract(cfg, cfg.max_position_embeddings),
                      **capture_entry(graphs.frame_capture(self.model))},
            "codebooks": k, "noise_vocab": v,
            # Sesame's generator samples at temperature 0.9, top-k 50; 125 frames = 10 s at 12.5 Hz
            "sampling": [{"name": "codebooks", "codebooks": [0, k], "vocab": v,
                          "inputs": {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p"},
                          "defaults": {"temperature": 0.9, "top_k": 50, "top_p": 1.0}}],
            "defaults": {"max_frames": 125},
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
                             "position_ids": "position_ids", "cache": kv_cache_contract(cfg)},
                "depth": {"graph": "depth", "ids": "input_ids", "hidden": "backbone_last_hidden_state",
                          "cache": kv_cache_contract(dcfg)}},
        }

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
