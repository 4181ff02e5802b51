"""`voxport verify` and every command that loads graphs refuse damaged or mismatched artifacts, each
with a specific message; a sound set of five variants passes."""

import json
import shutil

import pytest

from voxport.runtime.graphs import Graphs
from voxport.cli import main
from voxport.errors import ArtifactError, DtypeError
from voxport.verify import verify

DTYPES = ["fp32", "fp16", "q8", "q4", "q4f16"]
DAMAGED = "onnx/frame_q4.onnx"  # the graph speak runs per frame


@pytest.fixture
def copy(tiny_dir, tmp_path):
    """A private copy of the tiny artifact set, safe to damage."""
    dst = tmp_path / "tiny"
    shutil.copytree(tiny_dir, dst)
    return dst


def _edit_manifest(d, fn):
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m, indent=2))


def _entry(m, path):
    return next(f for g in m["graphs"].values() for v in g["variants"].values() for f in v["files"] if f["path"] == path)


def test_sound_set_passes_every_check(tiny_dir, capsys):
    m = json.loads((tiny_dir / "manifest.json").read_text())
    assert m["dtypes"] == DTYPES
    assert verify(tiny_dir) == []
    assert main(["verify", str(tiny_dir)]) == 0
    assert "verify OK" in capsys.readouterr().out


def _assert_refused(d, capsys, expect: str, dtype="q4"):
    """verify lists it; the runtime (speak) and parity refuse to load it, naming the file."""
    problems = verify(d)
    assert len(problems) == 1 and DAMAGED in problems[0] and expect in problems[0], problems
    assert main(["verify", str(d)]) == 2
    assert expect in capsys.readouterr().err
    with pytest.raises(ArtifactError, match=expect):
        Graphs(d, dtype=dtype).session("frame")
    Graphs(d, dtype="fp32").session("frame")  # the other variants are untouched and still load
    assert main(["speak", str(d), "Hi.", "-o", str(d / "x.wav"), "--dtype", dtype, "--max-frames", "2"]) == 2
    err = capsys.readouterr().err
    assert DAMAGED in err and expect in err
    assert main(["parity", str(d), "--dtypes", dtype]) == 2  # refused before the PyTorch model is loaded
    assert expect in capsys.readouterr().err


def test_flipped_byte(copy, capsys):
    p = copy / DAMAGED
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    _assert_refused(copy, capsys, "sha256 differs from the manifest")


def test_truncated_file(copy, capsys):
    p = copy / DAMAGED
    size = p.stat().st_size
    p.write_bytes(p.read_bytes()[: size - 1000])
    _assert_refused(copy, capsys, f"{size - 1000} bytes, manifest says {size}")


def test_missing_file(copy, capsys):
    (copy / DAMAGED).unlink()
    _assert_refused(copy, capsys, "missing")


def test_manifest_edited_to_a_wrong_hash(copy, capsys):
    _edit_manifest(copy, lambda m: _entry(m, DAMAGED).update(sha256="0" * 64))
    _assert_refused(copy, capsys, "sha256 differs from the manifest")


def test_garbage_with_a_matching_hash_fails_the_onnx_checker(copy):
    """Hash checks prove the files are the ones exported; the checker and a load prove they are graphs."""
    from voxport.manifest import file_entry

    (copy / DAMAGED).write_bytes(b"\x08\x07not an onnx model" * 100)
    _edit_manifest(copy, lambda m: _entry(m, DAMAGED).update(file_entry(copy, DAMAGED)))
    problems = verify(copy)
    assert len(problems) == 1 and "ONNX checker" in problems[0] and DAMAGED in problems[0], problems


def test_declared_io_that_does_not_match_the_file(copy):
    def rename(m):
        m["graphs"]["depth"]["inputs"][0]["name"] = "ids"
        m["graphs"]["depth"]["outputs"][0]["shape"] = ["batch", 7]

    _edit_manifest(copy, rename)
    problems = verify(copy, ["fp32", "q4"])
    assert len(problems) == 4, problems  # inputs and the logits shape, in both variants
    assert all(p.startswith("depth [") for p in problems)
    assert any("inputs ['input_ids'" in p and "'ids'" in p for p in problems)
    assert any("output logits" in p and "manifest says float32 ['batch', 7]" in p for p in problems)


def test_unknown_dtype_and_absent_variant(copy, capsys):
    assert main(["verify", str(copy), "--dtypes", "q3"]) == 2
    assert "unknown dtype 'q3'; known: fp32, fp16, q8, q4, q4f16" in capsys.readouterr().err
    assert main(["speak", str(copy), "Hi.", "--dtype", "int2"]) == 2
    assert "unknown dtype 'int2'" in capsys.readouterr().err
    assert main(["export", "tiny", "-o", str(copy / "x"), "--dtypes", "fp16,q5"]) == 2  # before any export work
    assert "unknown dtype 'q5'" in capsys.readouterr().err and not (copy / "x").exists()

    _edit_manifest(copy, lambda m: m["graphs"]["depth"]["variants"].pop("q8"))
    with pytest.raises(DtypeError, match=r"graph 'depth' has no q8 variant \(exported: fp32, fp16, q4, q4f16\)"):
        Graphs(copy, dtype="q8")
    assert verify(copy) == ["depth [q8]: no such variant in manifest.json (has fp32, fp16, q4, q4f16)"]
