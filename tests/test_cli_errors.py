"""Every bad input to the CLI is one line and exit 2, found before the expensive work."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from voxport.cli import main
from tests.api_helpers import tone


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"voxport {command}: error: ") and "Traceback" not in err, err
    return err


def _copy(src: Path, dst: Path, edit=None) -> Path:
    """The artifact with its files linked, its manifest copied (and edited)."""
    dst.mkdir()
    for p in src.iterdir():
        if p.name != "manifest.json":
            (dst / p.name).symlink_to(p)
    m = json.loads((src / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps(edit(m) if edit else m))
    return dst


@pytest.mark.parametrize("manifest,message", [
    ({"format_version": 3}, "not a valid voxport manifest (manifest.schema.json): top level: 'family' is a required"),
    ("drop graphs", "top level: 'graphs' is a required property"),
    ("drop runtime", "top level: 'runtime' is a required property"),
    ("bad speakers", "runtime.generation.speakers.kind: 'robot' is not one of ['integer', 'name']"),
    ("[" * 100000, "not valid JSON"),
])
@pytest.mark.parametrize("command", ["verify", "speak", "serve", "parity"])
def test_a_damaged_manifest_is_one_line_everywhere(tiny_dir, tmp_path, capsys, command, manifest, message):
    edits = {"drop graphs": lambda m: {k: v for k, v in m.items() if k != "graphs"},
             "drop runtime": lambda m: {k: v for k, v in m.items() if k != "runtime"},
             "bad speakers": lambda m: {**m, "runtime": {**m["runtime"], "generation": {
                 **m["runtime"]["generation"], "speakers": {"kind": "robot", "names": []}}}}}
    edit = edits.get(manifest) if isinstance(manifest, str) else None
    d = _copy(tiny_dir, tmp_path / "art", edit)
    if edit is None:
        (d / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    args = {"verify": [], "speak": ["Hello."], "serve": ["--port", "0"], "parity": ["--frames", "2"]}[command]
    t = time.perf_counter()
    assert main([command, str(d), *args]) == 2
    assert time.perf_counter() - t < 5  # before any model loads
    assert message in _one_line(capsys, command)


@pytest.mark.parametrize("args,message", [
    (["speak", "{tiny}", "caf\udce9 au lait"], "text is not valid UTF-8 text (character 3: U+DCE9"),
    (["speak", "{tiny}", "Hi.", "--ref-text", "\ud800", "--ref-audio", "x.wav"], "--ref-text is not valid UTF-8"),
    (["speak", "{tiny}", "Hi.", "--seed", "-1"], "--seed must be between 0 and 2**63 - 1, got -1"),
    (["speak", "{tiny}", "Hi.", "--seed", str(2 ** 64)], "--seed must be between 0 and 2**63 - 1"),
    (["speak", "{tiny}", "Hi.", "--max-frames", "0"], "--max-frames must be >= 1, got 0"),
    (["speak", "{tiny}", "Hi.", "--chunk-frames", "-3"], "--chunk-frames must be frame counts >= 1 separated by commas (e.g. 1,4), got '-3'"),
    (["speak", "{tiny}", "Hi.", "--chunk-frames", "1,4,"], "--chunk-frames must be frame counts >= 1 separated by commas (e.g. 1,4), got '1,4,'"),
    (["speak", "{tiny}", "Hi.", "-o", "-", "--step-graphs"], "needs the fused graph, not --step-graphs"),
    (["serve", "{tiny}", "--port", "70000"], "--port must be between 0 and 65535, got 70000"),
    (["serve", "{tiny}", "--api-key", "   "], "--api-key is blank"),
    (["serve", "{tiny}", "--host", "0.0.0.0", "--api-key", " \t"], "--api-key is blank"),
    (["serve", "{tiny}", "--api-key", "two words"], "--api-key must be printable ASCII without spaces"),
    (["serve", "{tiny}", "--send-timeout", "0"], "--send-timeout must be a positive number, got 0.0"),
    (["serve", "{tiny}", "--max-connections", "-1"], "--max-connections must be a positive number"),
    (["serve", "{tiny}", "--chunk-frames", "1,0"], "--chunk-frames must be frame counts >= 1 separated by commas (e.g. 1,4), got '1,0'"),
    (["serve", "{tiny}", "--codec-threads", "-1"], "--threads and --codec-threads must be >= 0 (0: all cores), got -1"),
    (["serve", "{tiny}", "--allow-origin", "evil.example"], "--allow-origin 'evil.example': give an origin like"),
    (["serve", "{tiny}", "--public-path", "/models/"], "--public-path only means something with --api-key"),
    (["parity", "{tiny}", "--frames", "-1"], "--frames must be >= 1, got -1"),
])
def test_bad_arguments(tiny_dir, capsys, args, message):
    t = time.perf_counter()
    assert main([a.format(tiny=tiny_dir) for a in args]) == 2
    assert time.perf_counter() - t < 5
    assert message in _one_line(capsys, args[0])


def test_serve_refuses_a_precision_not_exported(tiny_dir, tmp_path, capsys):
    d = _copy(tiny_dir, tmp_path / "fp32only", lambda m: {**m, "dtypes": ["fp32"]})
    assert main(["serve", str(d), "--dtype", "q4", "--port", "0"]) == 2
    assert "no q4 variant (exported: fp32); give --dtype one of those" in _one_line(capsys, "serve")


def test_an_unreadable_artifact_directory(tiny_dir, tmp_path, capsys, monkeypatch):
    d = _copy(tiny_dir, tmp_path / "locked")
    d.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make reading the manifest fail as it would for a user
        real = Path.read_text

        def read_text(self, *a, **k):
            if self.parent == d:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "read_text", read_text)
    try:
        for command in ("verify", "speak"):
            assert main([command, str(d), *(["Hi."] if command == "speak" else [])]) == 2
            assert "Permission denied" in _one_line(capsys, command)
    finally:
        d.chmod(0o755)


def test_what_does_not_fit_is_named(tiny_dir, tmp_path, capsys):
    """max_frames past the context, or a long reference transcript: never "the word 'Hello' alone"."""
    assert main(["speak", str(tiny_dir), "Hello.", "--max-frames", "600", "-o", str(tmp_path / "a.wav")]) == 2
    err = _one_line(capsys, "speak")
    assert "max_frames 600 does not fit: this model's context is 512 positions and the shortest prompt takes" in err
    assert "alone does not fit" not in err
    ref = tone(tmp_path / "ref.wav", seconds=1.0)
    long_text = "This transcript goes on and on. " * 40
    assert main(["speak", str(tiny_dir), "Hello.", "--ref-audio", str(ref), "--ref-text", long_text,
                 "-o", str(tmp_path / "b.wav")]) == 2
    err = _one_line(capsys, "speak")
    assert "of them the reference: its transcript and audio" in err and "alone does not fit" not in err, err
    long = " ".join(["Word."] * 200)  # must be split, and 300 frames leave no room in half the context
    assert main(["speak", str(tiny_dir), long, "--max-frames", "300", "-o", str(tmp_path / "c.wav")]) == 2
    err = _one_line(capsys, "speak")
    assert "max_frames 300 and the prompt of even one word" in err and "lower max_frames to at most" in err, err
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "c.wav").exists()


def test_reference_share_counts_the_audio(qwen_base_dir, tmp_path, capsys):
    """Qwen3-TTS builds a reference's prompt only beside a target text: the share named in the error is the
    reference's frames (12.5 per second of audio), not the few positions its prompt builder gives it alone."""
    import re

    ref = tone(tmp_path / "ref.wav", seconds=100.0, sr=24000)
    assert main(["speak", str(qwen_base_dir), "Hello.", "--ref-audio", str(ref), "--ref-text", "Short.",
                 "--max-frames", "3000", "-o", str(tmp_path / "a.wav")]) == 2
    err = _one_line(capsys, "speak")
    share = int(re.search(r"\((\d+) of them the reference", err).group(1))
    rate = json.loads((qwen_base_dir / "manifest.json").read_text())["runtime"]["frame_rate"]
    assert share >= 100.0 * rate, err
    assert not (tmp_path / "a.wav").exists()
