"""The rule for when the written (fused) graphs are used: it agrees with what the installed
onnxruntime's kernels run, and a graph that does not run fails the export with one line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from voxport.errors import ExportError
from voxport.exporter import kernels


def _cfg(head_dim, heads, kv_heads):
    return SimpleNamespace(head_dim=head_dim, num_attention_heads=heads, num_key_value_heads=kv_heads,
                           hidden_act="silu", sliding_window=None)


@pytest.mark.parametrize("head_dim", [8, 16, 24, 32, 40, 48, 64, 72, 80, 96, 120, 128, 256])
@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (4, 4), (12, 3), (6, 4)])
def test_the_rule_is_what_the_kernels_run(head_dim, heads, kv_heads):
    why = kernels.unfusable(_cfg(head_dim, heads, kv_heads))
    refused = kernels.probe(head_dim, heads, kv_heads)
    assert (why is None) == (refused is None), (why, refused)
    if refused and heads % kv_heads == 0:  # the head size alone: the rule names the kernel's own reason
        assert "head_size shall be a multiple of 16" in refused and "multiple of 16" in why, (why, refused)


def test_a_written_graph_the_kernels_refuse_fails_the_export_smoke_run_in_one_line(monkeypatch, tmp_path):
    """The rule switched off: tiny-hd24's frame graph is written with GroupQueryAttention at head size
    24, which onnxruntime loads but refuses at its first run; the smoke run says so in one line."""
    from voxport.exporter import checkpoint
    from voxport.exporter.export import export_graph, smallest_feeds, smoke_run
    from voxport.manifest import file_entry

    monkeypatch.setattr(kernels, "RULES", ())
    ref, fam = checkpoint.load(checkpoint.resolve("tiny-hd24"), "cpu")
    spec = next(s for s in fam(ref).graphs() if s.name == "frame")
    assert spec.build is not None  # written, not traced, with the rule off
    (tmp_path / "onnx").mkdir()
    files = export_graph(spec, tmp_path)
    graphs = {"frame": {"variants": {"fp32": {"files": [file_entry(tmp_path, f) for f in files]}}}}
    with pytest.raises(ExportError, match=r"graph frame \(fp32\) does not run in onnxruntime .*head_size shall be "
                                          r"a multiple of 16") as e:
        smoke_run(tmp_path, graphs, {"frame": smallest_feeds(spec)}, lambda m: None)
    assert "\n" not in str(e.value)
