"""Orpheus TTS (canopylabs/orpheus-3b-0.1-ft): a plain LlamaForCausalLM that writes SNAC 24 kHz codes as
text tokens, seven per 85.3 ms frame. Presets, loading, graphs and the generation contract."""

from __future__ import annotations

import json
from pathlib import Path

from voxport.errors import CheckpointError
from voxport.exporter.families.orpheus import codec, graphs, presets
from voxport.exporter.families.orpheus.layout import POSITIONS, VOICES, Layout
from voxport.exporter.families.orpheus.precision import ORPHEUS_PRECISION, frame_policy
from voxport.exporter.shared_graphs import kv_cache_contract
from voxport.exporter.spec import Family, GraphSpec, capture_entry, register, twin_of

# canopy's engine (canopyai/Orpheus-TTS, engine_class.py) samples with these; the checkpoint carries none
DEFAULTS = {"temperature": 0.6, "top_p": 0.8, "repetition_penalty": 1.3}
TEMPLATE = "{speaker}: {text}"


class Orpheus:
    """The reference: the LM, SNAC, and the token layout read from the checkpoint."""

    def __init__(self, lm, snac, layout: Layout, tokenizer_file: Path):
        self.lm, self.snac, self.layout, self.tokenizer_file = lm, snac, layout, tokenizer_file
        self.config = lm.config

    def parameters(self):
        yield from self.lm.parameters()
        yield from self.snac.parameters()


def read_layout(path: Path) -> Layout:
    from tokenizers import Tokenizer

    size = json.loads((path / codec.SNAC_DIR / "config.json").read_text())["codebook_size"]
    try:
        return Layout.read(Tokenizer.from_file(str(path / "tokenizer.json")), size)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None


@register
class OrpheusFamily(Family):
    name = "orpheus"
    model_types = ("llama",)
    presets = presets.PRESETS
    precision = ORPHEUS_PRECISION

    @classmethod
    def build_preset(cls, preset, out):
        presets.build_preset(preset, out)

    @classmethod
    def check_dir(cls, path, config):
        if not (path / "tokenizer.json").is_file():
            raise CheckpointError(f"{path}: no tokenizer.json (an Orpheus checkpoint carries its tokenizer)")
        codec.check_dir(path)
        layout = read_layout(path)
        if config.get("vocab_size", 0) < layout.end:
            raise CheckpointError(f"{path}: vocab_size {config.get('vocab_size')} is smaller than the audio ids "
                                  f"the tokenizer lays out (up to {layout.end}); not an Orpheus checkpoint")

    @classmethod
    def load(cls, path, device="cpu"):
        import torch
        from transformers import LlamaForCausalLM

        path = Path(path)
        lm = LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32, local_files_only=True).eval()
        return Orpheus(lm, codec.load(path), read_layout(path), path / "tokenizer.json")

    def artifact_files(self, out):
        import shutil

        shutil.copy(self.model.tokenizer_file, out / "tokenizer.json")
        return {"tokenizer_file": "tokenizer.json"}

    def graphs(self) -> list[GraphSpec]:
        m = self.model
        return [graphs.embed(m.lm), graphs.frame(m.lm, m.layout), *graphs.frame_capture(m.lm, m.layout),
                graphs.lm_step(m.lm), graphs.snac_decoder(m.snac),
                graphs.snac_window(m.snac), graphs.snac_stream(m.snac)]

    def precision_policy(self, graph: str):
        if twin_of(graph) == "frame":
            return frame_policy(self.model.lm.config.num_hidden_layers)
        return super().precision_policy(graph)

    def reference_generate(self, text, frames, device):
        from voxport.exporter.families.orpheus.parity import reference_generate

        return reference_generate(self, text, frames, device)

    def parity_reference(self, rt, ckpt, frames, device, progress):
        from voxport.exporter.families.orpheus.parity import reference

        return reference(rt, self, frames, progress)

    @classmethod
    def parity_compare(cls, rt, reference, frames, progress):
        from voxport.exporter.families.orpheus.parity import compare, rows

        return rows(compare(rt, reference, frames, progress))

    # -- runtime facts ----------------------------------------------------------------------------
    def runtime_config(self) -> dict:
        m, lay = self.model, self.model.layout
        cfg, c = m.lm.config, lay.codebook_size
        fs = codec.samples_per_frame(m.snac)
        prefix, suffix = lay.prompt_ids()
        cache = kv_cache_contract(cfg, cfg.max_position_embeddings)
        return {
            "family": self.name,
            "num_codebooks": POSITIONS,
            "codebook_vocab": c + 1,
            "max_positions": cfg.max_position_embeddings,
            "sample_rate": int(m.snac.sampling_rate),
            "frame_size": fs,
            "frame_rate": m.snac.sampling_rate / fs,
            "layout": {"audio_start": lay.audio_start, "codebook_size": c, "stop_id": lay.stop_id,
                       "levels": [0, 1, 2, 2, 1, 2, 2]},
            "codec_stream": graphs.stream_runtime(m.snac),
            "generation": {
                # one call: the input, then six more LM steps inside the graph (7 cache positions a frame)
                "frame": {"graph": "frame", "codes": "codes", "noise": "noise", "steps": POSITIONS,
                          "embeds": {"input": "inputs_embeds", "output": "next_embeds"},
                          "cache": cache, **capture_entry(graphs.frame_capture(m.lm, m.layout)),
                          # canopy's repetition penalty (applied when greedy too), per position's own ids
                          "logits": {"codebooks": [0, POSITIONS], "repetition_penalty": "repetition_penalty",
                                     "seen": "seen"}},
                "codebooks": POSITIONS, "noise_vocab": c + 1,
                # vocab C + 1: position 0's ids and the stop id (top-k C + 1 keeps every id; positions 1-6
                # clip it to their C)
                "sampling": [{"name": "audio", "codebooks": [0, POSITIONS], "vocab": c + 1,
                              "inputs": {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p"},
                              "defaults": {"temperature": DEFAULTS["temperature"], "top_k": c + 1,
                                           "top_p": DEFAULTS["top_p"],
                                           "repetition_penalty": DEFAULTS["repetition_penalty"]}}],
                # 10.7 s of audio; canopy's engine caps tokens, not frames
                "defaults": {"max_frames": 125},
                # position 0 drew the stop id: the graph writes code C at every position
                "stop": {"codebooks": [0, 1], "token": c},
                "prompt": {"format": "token_ids", "graph": "embed", "ids": "input_ids", "template": TEMPLATE,
                           "prefix": prefix, "suffix": suffix, "add_special_tokens": True, "voice_clone": False},
                # the finetuned model's voices (its model card); the prompt names one as text
                "speakers": {"kind": "name", "names": list(VOICES)},
                "codec": {"decoder": "snac_decoder", "stream": "snac_stream", "window": "snac_window",
                          "noise": {"input": "codec_noise", "per_frame": sum(codec.noise_per_frame(m.snac)),
                                    "distribution": "normal"}},
            },
        }
