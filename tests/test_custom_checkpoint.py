"""A checkpoint saved with save_pretrained, with non-default dimensions (16 codebooks, odd sizes),
exports from its directory and passes parity: nothing in the exporter assumes CSM-1B's shapes."""

import dataclasses
import json

from voxport.exporter.families.csm.presets import PRESETS, build_model, build_tokenizer, save_checkpoint
from voxport.validation.harness import run
from voxport.cli import main


def test_16_codebook_checkpoint_exports_and_passes_parity(tmp_path, cache_root, capsys):
    preset = dataclasses.replace(
        PRESETS["tiny"], name="custom16", num_codebooks=16, seed=3,
        backbone=dict(hidden_size=40, num_hidden_layers=3, num_attention_heads=5, num_key_value_heads=1,
                      head_dim=8, intermediate_size=72, max_position_embeddings=300),
        depth=dict(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                   head_dim=12, intermediate_size=40))
    tokenizer = build_tokenizer(400)
    ckpt = tmp_path / "my-checkpoint"
    save_checkpoint(build_model(preset, tokenizer), tokenizer, ckpt)

    out = tmp_path / "artifacts"
    assert main(["export", str(ckpt), "-o", str(out)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"]["kind"] == "dir" and m["source"]["path"] == str(ckpt.resolve())
    assert m["runtime"]["num_codebooks"] == 16 and m["runtime"]["backbone"]["layers"] == 3
    assert m["graphs"]["mimi_decoder"]["inputs"][0]["shape"] == ["batch", 16, "frames"]
    assert main(["verify", str(out)]) == 0  # all five precision variants of a 16-codebook model

    r = run(out, frames=50, progress=lambda s: None)
    assert r["ok"], r["failures"]
    assert r["greedy"]["identical"] and r["greedy"]["frames_reference"] == 50
    assert r["voice_prompt"]["identical"]
