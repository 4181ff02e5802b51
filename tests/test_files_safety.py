"""Nothing of the user's is lost: `export -o` replaces only an artifact directory, and only once the
new one is complete; `speak` writes beside its target and renames at the end, so a failure (a bad
argument found late, a full disk) leaves an existing file byte for byte as it was."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest

import voxport.fsutil
from voxport.cli import main
from voxport.fsutil import atomic_dir
from voxport.manifest import is_artifact_dir

TEXT = "Nothing is lost."
OLD = b"RIFF-the-user's-own-recording" * 100


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"voxport {command}: error: ") and "Traceback" not in err, err
    return err


@pytest.fixture
def no_checkpoint(monkeypatch):
    """Resolving the checkpoint is export's first expensive step: reaching it fails the test."""
    import voxport.exporter.checkpoint

    def refuse(*a, **k):
        raise AssertionError("export reached the checkpoint before checking its output")

    monkeypatch.setattr(voxport.exporter.checkpoint, "resolve", refuse)


@pytest.mark.parametrize("kind,message", [
    ("notes", "exists and is not a voxport artifact directory; refusing to replace it"),
    ("file", "exists and is not a directory"),
    ("proc", "cannot create a directory in /proc"),
    ("foreign manifest", "exists and is not a voxport artifact directory"),
])
def test_export_refuses_what_it_would_destroy(tmp_path, capsys, no_checkpoint, kind, message):
    out = tmp_path / "out"
    if kind == "notes":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    elif kind == "file":
        out.write_text("a regular file")
    elif kind == "foreign manifest":  # a web app's manifest.json is not ours
        out.mkdir()
        (out / "manifest.json").write_text(json.dumps({"name": "my app", "format_version": 2}))
    else:
        out = "/proc/voxport-test/out"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    t = time.perf_counter()
    assert main(["export", "tiny", "-o", str(out)]) == 2
    assert time.perf_counter() - t < 2  # before the checkpoint (no_checkpoint would have failed)
    assert message in _one_line(capsys, "export")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_an_artifact_is_replaced_only_when_the_new_one_is_complete(tmp_path):
    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"format_version": 2, "toolchain": {"voxport": "0.1.0"}}))
    (art / "old.onnx").write_bytes(b"old")
    assert is_artifact_dir(art)
    with pytest.raises(RuntimeError, match="export failed"):
        with atomic_dir(art, is_artifact_dir) as tmp:
            (tmp / "new.onnx").write_bytes(b"half")
            raise RuntimeError("export failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no partial directory left
    assert (art / "old.onnx").read_bytes() == b"old"
    with atomic_dir(art, is_artifact_dir) as tmp:
        (tmp / "new.onnx").write_bytes(b"new")
        assert (art / "old.onnx").exists()  # the old one stays until the new one is complete
    assert sorted(p.name for p in art.iterdir()) == ["new.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_an_empty_directory_is_a_fine_export_target(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with atomic_dir(out, is_artifact_dir) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["manifest.json"]


def _existing(tmp_path, name="keep.wav"):
    target = tmp_path / name
    target.write_bytes(OLD)
    return target


def _left(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("stream", [False, True])
def test_a_late_failure_leaves_the_existing_file(tiny_dir, tmp_path, capsys, monkeypatch, stream):
    """Generation fails after audio has been written (here: the third chunk); the file is untouched."""
    from voxport.errors import InputError
    from voxport.runtime import stream as stream_mod

    real = stream_mod.Speech._run

    def failing(self):
        for i, pcm in enumerate(real(self)):
            if i == 2:
                raise InputError("the third chunk failed")
            yield pcm

    monkeypatch.setattr(stream_mod.Speech, "_run", failing)
    target = _existing(tmp_path)
    args = ["speak", str(tiny_dir), TEXT, "-o", str(target), "--greedy", "--max-frames", "8"]
    assert main(args + (["--stream"] if stream else [])) == 2
    assert "the third chunk failed" in _one_line(capsys, "speak")
    assert target.read_bytes() == OLD and _left(tmp_path) == ["keep.wav"]


class _FullDisk:
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.mark.parametrize("flags,full", [([], "audio"), (["--stream"], "audio"), (["--codes-out", "c.json"], "codes")])
def test_a_full_disk_is_one_line_and_the_target_is_untouched(tiny_dir, tmp_path, capsys, monkeypatch, flags, full):
    real_fdopen = os.fdopen
    room = 0 if full == "codes" else 3000  # the WAV header and some audio, then the disk is full

    def fdopen(fd, mode="r", *a, **k):
        f = real_fdopen(fd, mode, *a, **k)
        name = os.readlink(f"/proc/self/fd/{fd}")
        return _FullDisk(f, room) if (".c.json." in name) == (full == "codes") else f

    monkeypatch.setattr(voxport.fsutil.os, "fdopen", fdopen)
    target, codes = _existing(tmp_path), _existing(tmp_path, "c.json")
    flags = [str(tmp_path / f) if f.endswith(".json") else f for f in flags]
    assert main(["speak", str(tiny_dir), TEXT, "-o", str(target), "--greedy", "--max-frames", "8", *flags]) == 2
    err = _one_line(capsys, "speak")
    assert "No space left on device" in err and "the existing file was left as it was" in err, err
    assert codes.read_bytes() == OLD
    assert (full == "codes") or target.read_bytes() == OLD  # the audio, when it was what failed
    assert _left(tmp_path) == ["c.json", "keep.wav"]  # no partial file


@pytest.mark.parametrize("a,b", [("-o", "--codes-out"), ("-o", "--stats-json"), ("--codes-out", "--stats-json")])
def test_one_path_for_two_outputs_is_refused(tiny_dir, tmp_path, capsys, a, b):
    target = _existing(tmp_path, "same.wav")
    os.chdir(tmp_path)
    args = {"-o": "x.wav", a: str(target), b: "./same.wav"}  # one file, spelled two ways
    t = time.perf_counter()
    assert main(["speak", str(tiny_dir), TEXT, *[x for kv in args.items() for x in kv]]) == 2
    assert time.perf_counter() - t < 1
    err = _one_line(capsys, "speak")
    assert "name the same file" in err and a in err and b in err, err
    assert target.read_bytes() == OLD and _left(tmp_path) == ["same.wav"]


def test_stream_writes_beside_and_renames(tiny_dir, tmp_path):
    target = _existing(tmp_path)
    assert main(["speak", str(tiny_dir), TEXT, "-o", str(target), "--greedy", "--max-frames", "4", "--stream"]) == 0
    import soundfile as sf

    info = sf.info(target)
    assert info.samplerate == 24000 and 1920 <= info.frames <= 4 * 1920
    assert _left(tmp_path) == ["keep.wav"]
    os.chmod(target, 0o640)  # a file replaced keeps its mode; a new one gets the umask's, not mkstemp's 0600
    assert main(["speak", str(tiny_dir), TEXT, "-o", str(target), "--greedy", "--max-frames", "2"]) == 0
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    old = os.umask(0o022)
    try:
        assert main(["speak", str(tiny_dir), TEXT, "-o", str(tmp_path / "new.wav"), "--max-frames", "2"]) == 0
    finally:
        os.umask(old)
    assert oct((tmp_path / "new.wav").stat().st_mode & 0o777) == "0o644"
