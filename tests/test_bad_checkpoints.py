"""Bad checkpoints: one line naming the problem and the path, exit code 2, nothing written."""

import json
import os
import shutil
import time

import pytest

from voxport.cli import main


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _run_export(model, out, capsys):
    code = main(["export", str(model), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_not_a_directory(tmp_path, capsys):
    code, err = _run_export(tmp_path / "nope", tmp_path / "out", capsys)
    assert code == 2 and "not a directory" in err and str(tmp_path / "nope") in err
    assert not (tmp_path / "out").exists()


def test_other_architecture(tmp_path, capsys):
    # (a plain Llama is Orpheus's model_type: its own refusal is in test_orpheus.py)
    d = tmp_path / "gpt2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    code, err = _run_export(d, tmp_path / "out", capsys)
    assert code == 2 and "unsupported architecture 'gpt2'" in err and "GPT2LMHeadModel" in err
    assert "voxport exports model_type" in err and "csm" in err  # what it does export, named
    assert not (tmp_path / "out").exists()


def test_corrupt_config(tiny_checkpoint, tmp_path, capsys):
    d = _copy(tiny_checkpoint, tmp_path / "ck")
    (d / "config.json").write_text("{not json")
    code, err = _run_export(d, tmp_path / "out", capsys)
    assert code == 2 and "config.json is not valid JSON" in err


def test_truncated_weights(tiny_checkpoint, tmp_path, capsys):
    d = _copy(tiny_checkpoint, tmp_path / "ck")
    w = d / "model.safetensors"
    os.truncate(w, w.stat().st_size // 2)
    code, err = _run_export(d, tmp_path / "out", capsys)
    assert code == 2 and "corrupt or truncated safetensors" in err and str(w) in err
    assert not (tmp_path / "out").exists()


def test_missing_weights_and_tokenizer(tiny_checkpoint, tmp_path, capsys):
    d = _copy(tiny_checkpoint, tmp_path / "ck")
    (d / "tokenizer.json").unlink()
    code, err = _run_export(d, tmp_path / "out", capsys)
    assert code == 2 and "missing tokenizer.json" in err
    (d / "model.safetensors").unlink()
    code, err = _run_export(d, tmp_path / "out", capsys)
    assert code == 2 and "no *.safetensors" in err


def test_hub_id_fails_fast_without_network(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: refused at once
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    t = time.time()
    code, err = _run_export("sesame/csm-1b", tmp_path / "out", capsys)
    assert code == 2 and "sesame/csm-1b: could not fetch from the Hugging Face hub" in err
    assert time.time() - t < 60
    assert not (tmp_path / "out").exists()


def test_failure_half_way_leaves_no_directory(tiny_checkpoint, tmp_path, monkeypatch):
    import voxport.exporter.export as ex

    real, calls = ex.export_graph, []

    def flaky(spec, root, *args, **kwargs):
        calls.append(spec.name)
        if len(calls) == 2:
            raise RuntimeError("simulated failure half-way")
        return real(spec, root, *args, **kwargs)

    monkeypatch.setattr(ex, "export_graph", flaky)
    out = tmp_path / "arts" / "tiny"
    with pytest.raises(RuntimeError, match="half-way"):
        ex.export(str(tiny_checkpoint), out, progress=lambda m: None)
    assert not out.exists() and list((tmp_path / "arts").iterdir()) == []


def test_sigterm_half_way_leaves_no_directory(cache_root, tmp_path):
    """A SIGTERM (a supervisor, `timeout`, a container stop) during an export removes the half-written
    directory as Ctrl-C does, and says so: exit 143, one line."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "arts" / "tiny"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "voxport", "export", "tiny", "-o", str(out)],
                            env={**os.environ, "VOXPORT_CACHE": str(cache_root)}, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.suffix == ".onnx" for d in out.parent.glob(".tiny.partial-*")
                                             for p in d.rglob("*")):
        time.sleep(0.2)
    assert proc.poll() is None, "the export ended before it had written a graph"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "voxport export: terminated"
    assert list(out.parent.iterdir()) == []
