"""`voxport speak` checks where it will write before it loads or generates anything."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from voxport.cli import main


@pytest.fixture
def no_generation(monkeypatch):
    """Loading the runtime is the first expensive step: reaching it fails the test."""
    import voxport.runtime.runtime

    def refuse(*a, **k):
        raise AssertionError("speak loaded the runtime before checking its output path")

    monkeypatch.setattr(voxport.runtime.runtime.Runtime, "__init__", refuse)


@pytest.mark.parametrize("where,extra,message", [
    ("missing/x.wav", [], "directory {tmp}/missing does not exist"),
    (".", [], "output {tmp} is a directory; give a file name"),
    ("/proc/voxport-test.wav", [], "cannot create a file in /proc"),
    ("x.aac", [], "cannot write audio with extension '.aac'; use one of .wav, .flac, .ogg, .mp3"),
    ("x", [], "cannot write audio with extension '(none)'"),
    ("x.wav", ["--codes-out", "missing/c.json"], "--codes-out {tmp}/missing/c.json: directory"),
    ("x.wav", ["--stats-json", "."], "--stats-json {tmp} is a directory"),
    ("-", ["--step-graphs"], "-o - (raw PCM on stdout) streams; it needs the fused graph, not --step-graphs"),
])
def test_bad_output_is_refused_before_generation(tiny_dir, tmp_path, capsys, no_generation, where, extra, message):
    out = where if where.startswith("/") or where == "-" else str(tmp_path / where) if where != "." else str(tmp_path)
    extra = [str(tmp_path / e) if "/" in e or e == "." else e for e in extra]
    extra = [str(tmp_path) if e == str(tmp_path / ".") else e for e in extra]
    before = sorted(tmp_path.rglob("*"))
    t = time.perf_counter()
    assert main(["speak", str(tiny_dir), "hello", "-o", out, *extra]) == 2
    assert time.perf_counter() - t < 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("voxport speak: error: ")
    assert message.format(tmp=tmp_path) in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a probe file


def test_the_extension_picks_the_format(tiny_dir, tmp_path):
    for ext, fmt in (("ogg", "OGG"), ("flac", "FLAC")):
        out = tmp_path / f"x.{ext}"
        assert main(["speak", str(tiny_dir), "hello", "-o", str(out), "--max-frames", "2", "--greedy"]) == 0
        info = sf.info(out)
        assert info.format == fmt and abs(info.frames - 2 * 1920) < 1920
    a, _ = sf.read(tmp_path / "x.flac", dtype="int16")
    assert a.shape == (2 * 1920,) and np.abs(a).max() > 0
