"""The llama.cpp peer of `voxport bench` without llama.cpp: its timing lines parsed from a real
captured log, the row built from them, every reason it skips, and what the family answers about a
checkpoint; the released vocabulary and special-token names of the Qwen3-TTS presets."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from voxport.bench import peers, report

LOG = Path(__file__).parent / "data" / "llama_tts_qwen3_0.6b_base_q4.log"  # a real run, trimmed


def _manifest(preset: str, model_type: str = "qwen3_tts") -> dict:
    return {"source": {"kind": "preset", "name": preset, "seed": 0, "model_type": model_type},
            "runtime": {"frame_size": 1920, "sample_rate": 24000}}


@pytest.fixture
def no_llama(monkeypatch, tmp_path):
    for var in ("VOXPORT_LLAMA_TTS", "VOXPORT_LLAMA_CPP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no llama-tts on it
    (tmp_path / "bin").mkdir()
    return tmp_path


def _fake_tree(root: Path) -> Path:
    """A llama.cpp tree's shape: build/bin/llama-tts and llama-quantize, convert_hf_to_gguf.py."""
    (root / "build" / "bin").mkdir(parents=True)
    for tool in ("llama-tts", "llama-quantize"):
        (root / "build" / "bin" / tool).write_text("#!/bin/sh\nexit 3\n")
        (root / "build" / "bin" / tool).chmod(0o755)
    (root / "convert_hf_to_gguf.py").write_text("")
    return root


def test_its_timing_lines_parse_from_a_real_log():
    got = peers.parse_log(LOG.read_text())
    # its own lines (qwen3-tts-0.6b-base, Q4_K_M + Q8_0, 10 frames, 2 threads on a saturated 2-core box):
    # "generated 10 frames, ...", "timings: prompt eval 7.96s + generation 58.19s + vocoder 38.93s = total
    # 105.09s", "output audio = 0.80s"
    assert got == {"frames": 10, "sample_rate": 24000, "prompt_s": 7.96, "generation_s": 58.19, "vocoder_s": 38.93,
                   "total_s": 105.09, "audio_s": 0.8}
    row = peers.row_from_runs([{**got, "wall_s": 116.19, "peak_rss_mb": 2792.0}], "Q4_K_M", "q8_0", "q4", 80.0)
    assert row["ms_per_frame"]["median"] == 5819.0 and row["codec_ms_per_frame"] == 3893.0
    assert row["first_audio_ms"] == 105090.0 and row["load_s"] == 11.1
    with pytest.raises(ValueError, match="no timings line"):
        peers.parse_log("llama_model_load: error loading model\n")


def test_a_row_from_runs_takes_medians_per_frame():
    run = {"frames": 24, "sample_rate": 24000, "prompt_s": 0.30, "generation_s": 3.60, "vocoder_s": 2.16,
           "total_s": 6.06, "audio_s": 1.92, "wall_s": 9.06, "peak_rss_mb": 1210.0}
    slow = {**run, "generation_s": 4.80, "peak_rss_mb": 1250.0, "wall_s": 10.0, "total_s": 7.0}
    row = peers.row_from_runs([run, slow, run], "Q4_K_M", "q8_0", "q4", 80.0)
    assert row["ms_per_frame"] == {"median": 150.0, "min": 150.0, "max": 200.0}
    assert row["codec_ms_per_frame"] == 90.0 and row["rtf"] == 3.0  # (150 + 90) / 80
    assert row["first_audio_ms"] == 6060.0 and row["streams"] is False  # the WAV comes at the end
    assert row["peak_rss_mb"] == 1210 and row["load_s"] == 3.0 and "note" not in row
    long = peers.row_from_runs([{**run, "frames": 80}], "Q4_K_M", "q8_0", "q4", 80.0)
    assert "codec windows of 72 frames" in long["note"]


def test_not_built_is_a_skip_that_says_how_to_build_it(no_llama):
    row = peers.llama_tts(_manifest("qwen3-tts-tiny-base"), ["q4"], "Hello.", 4, 2, 1)
    assert row == {"skipped": f"llama.cpp's llama-tts is not built on this machine ({peers.BUILD_HINT})"}
    assert "make llama-tts" in row["skipped"] and "VOXPORT_LLAMA_CPP" in row["skipped"]
    assert report._peer_lines({"peers": {"llama-tts": row}}) == [f"llama-tts: skipped ({row['skipped']})."]


def test_a_binary_without_its_tree_cannot_convert(no_llama, monkeypatch):
    tree = _fake_tree(no_llama / "llama.cpp")
    loose = no_llama / "bin" / "llama-tts"
    shutil.copy(tree / "build" / "bin" / "llama-tts", loose)
    monkeypatch.setenv("VOXPORT_LLAMA_TTS", str(loose))
    tools, why = peers.find_llama_cpp()
    assert tools is None and "VOXPORT_LLAMA_CPP" in why
    assert why.startswith(f"{loose.resolve()} has no llama.cpp source tree beside it")
    monkeypatch.setenv("VOXPORT_LLAMA_CPP", str(tree))
    built = tree / "build" / "bin"
    assert peers.find_llama_cpp() == (peers.Tools(loose.resolve(), built / "llama-quantize", tree), None)
    monkeypatch.delenv("VOXPORT_LLAMA_TTS")
    assert peers.find_llama_cpp() == (peers.Tools((built / "llama-tts").resolve(), built / "llama-quantize", tree), None)
    (built / "llama-quantize").unlink()
    assert peers.find_llama_cpp()[1].startswith(f"no llama-quantize in {tree}/build/bin")


def test_the_family_says_which_checkpoints_llama_tts_takes(no_llama, monkeypatch, cache_root):
    monkeypatch.setenv("VOXPORT_LLAMA_CPP", str(_fake_tree(no_llama / "llama.cpp")))
    skip = lambda preset, kind="qwen3_tts": peers.llama_tts(_manifest(preset, kind), ["q4"], "Hi.", 4, 2, 1)  # noqa: E731
    assert skip("marvis-250m", "csm") == {"skipped": "llama.cpp's llama-tts runs no csm checkpoint"}
    assert skip("qwen3-tts-tiny")["skipped"].startswith("llama-tts runs only Base checkpoints; this one is custom_voice")
    stand_in = re.match(r"the checkpoint's tokenizer has (\d+) tokens, not the released Qwen2 vocabulary",
                        skip("qwen3-tts-tiny-base")["skipped"])
    assert stand_in and int(stand_in.group(1)) <= 512  # the tiny presets' BPE, trained to at most 512
    assert "cannot be found again" in skip("no-such-preset")["skipped"]


def test_refusal_reads_the_architectures_the_converter_needs(cache_root, tmp_path):
    from voxport.exporter.checkpoint import family_of
    from voxport.exporter.presets import materialize

    ckpt = materialize("qwen3-tts-tiny-base", cache_root)
    config = json.loads((ckpt / "config.json").read_text())
    assert config["architectures"] == ["Qwen3TTSForConditionalGeneration"]
    family = family_of(ckpt)
    assert family.llama_tts_refusal(ckpt, {**config, "architectures": None}).startswith(
        "config.json's architectures is None, not the released ['Qwen3TTSForConditionalGeneration']")
    # the released vocabulary's size passes the tokenizer check (only the file's BPE is counted)
    (tmp_path / "vocab.json").write_text(json.dumps({str(i): i for i in range(151643)}))
    assert family.llama_tts_refusal(tmp_path, config) is None


def test_presets_use_the_released_special_token_names(cache_root):
    from transformers import AutoTokenizer

    from voxport.exporter.presets import materialize

    ckpt = materialize("qwen3-tts-tiny", cache_root)
    config = json.loads((ckpt / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(ckpt)
    # llama.cpp's runner finds these by name; config.json holds their ids
    assert {n: tok.convert_tokens_to_ids(n) for n in ("<tts_pad>", "<tts_text_bos>", "<tts_text_eod>")} == {
        "<tts_pad>": config["tts_pad_token_id"], "<tts_text_bos>": config["tts_bos_token_id"],
        "<tts_text_eod>": config["tts_eos_token_id"]}


def test_the_vocabulary_reader_builds_qwen2s_tokenizer_from_a_gguf(tmp_path):
    import gguf

    from voxport.exporter.families.qwen3_tts import vocab

    # a toy byte-level BPE in llama.cpp's layout: NORMAL tokens, merges, and the types of the rest
    tokens = ["a", "b", "c", "Ġ", "ab", "Ġc", "abc", "<|endoftext|>"]
    types = [gguf.TokenType.NORMAL] * 7 + [gguf.TokenType.CONTROL]
    w = gguf.GGUFWriter(str(tmp_path / "v.gguf"), "qwen2")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["a b", "Ġ c", "ab c"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    tok = vocab.tokenizer_from_gguf(tmp_path / "v.gguf")
    assert tok.encode("abc abc", add_special_tokens=False) == [6, 3, 6]  # "abc", then " abc" split whole: Ġ + abc
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 7 and tok.convert_tokens_to_ids("<tts_pad>") == 7 + 28
    assert [t for t, _ in vocab.ADDED][28:31] == ["<tts_pad>", "<tts_text_bos>", "<tts_text_eod>"]
    assert vocab.bpe_size(tmp_path) == 0


def test_the_report_puts_the_peer_beside_voxports_interleaved_windows():
    row = {"label": "llama-tts Q4_K_M (+Q8_0 predictor/codec)", "ms_per_frame": {"median": 150.0}, "codec_ms_per_frame": 90.0,
           "rtf": 3.0, "first_audio_ms": 6060.0, "peak_rss_mb": 1210, "load_average": [2.1, 2.0, 1.9],
           "voxport_interleaved": {"ms_per_frame": 60.0, "codec_ms_per_frame": 45.0, "first_audio_ms": 120.0,
                                   "peak_rss_mb": 2400, "windows": 3}}
    failed = {"label": "llama-tts F32", "error": "llama-tts failed (exit 134): GGML_ASSERT"}
    lines = report._peer_lines({"peers": {"llama-tts": {"rows": [row, failed]}}})
    assert lines[4] == ("| llama-tts Q4_K_M (+Q8_0 predictor/codec) | 150.0 | 90.0 | 3.00 | 6060 | 1210 | "
                        "60.0 + 45.0, 120 ms, 2400 MB | 2.50x / 2.00x | [2.1, 2.0, 1.9] |")
    assert lines[5].startswith("| llama-tts F32 | error: llama-tts failed (exit 134): GGML_ASSERT |")
    assert lines[5].count("|") == lines[4].count("|")
