"""Shared fixtures: the tiny presets are exported once per session into a temporary directory; one
Chromium per test module for the page's tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voxport-cache")
    os.environ["VOXPORT_CACHE"] = str(root)  # presets are materialised here, not in ~/.cache
    return root


def _export(tmp_path_factory, cache_root, preset: str, env: str, dtypes: str | None = None) -> Path:
    """A preset exported once per session; $`env` names an earlier export to reuse in development
    (copied: tests write into it)."""
    from voxport.exporter.export import export

    out = tmp_path_factory.mktemp("artifacts") / preset
    if os.environ.get(env):
        shutil.copytree(os.environ[env], out)
        return out
    export(preset, out, progress=lambda m: None, cache_root=cache_root, dtypes=dtypes)
    return out


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, cache_root) -> Path:
    return _export(tmp_path_factory, cache_root, "tiny", "VOXPORT_TEST_TINY_DIR")  # all five precision variants


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory, cache_root) -> Path:
    return _export(tmp_path_factory, cache_root, "qwen3-tts-tiny", "VOXPORT_TEST_QWEN_DIR")


@pytest.fixture(scope="session")
def qwen_base_dir(tmp_path_factory, cache_root) -> Path:
    """The Base (voice-clone) tiny preset, fp32 only: its speaker encoder and in-context prompt."""
    return _export(tmp_path_factory, cache_root, "qwen3-tts-tiny-base", "VOXPORT_TEST_QWEN_BASE_DIR", "fp32")


@pytest.fixture(scope="session")
def orpheus_dir(tmp_path_factory, cache_root) -> Path:
    """orpheus-tiny in all five precisions (the fidelity gates read every variant; ~35 s on 2 cores)."""
    return _export(tmp_path_factory, cache_root, "orpheus-tiny", "VOXPORT_TEST_ORPHEUS_DIR")


@pytest.fixture(scope="module")
def browser():
    from tests.web_helpers import CHROMIUM, FLAGS, require_browser

    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def tiny_checkpoint(cache_root) -> Path:
    from voxport.exporter.presets import materialize

    return materialize("tiny", cache_root)


@pytest.fixture(scope="session")
def marvis_bare(tmp_path_factory, cache_root) -> Path:
    """The tiny preset in the original CSM layout as Marvis's training writes it: config.json and the
    torchtune-named weights alone, no tokenizer, no codec."""
    from voxport.exporter.presets import materialize

    src = materialize("marvis-tiny", cache_root)
    out = tmp_path_factory.mktemp("marvis") / "bare"
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, out / name)
    return out


@pytest.fixture(scope="session")
def marvis_dir(tmp_path_factory, cache_root, marvis_bare) -> Path:
    """marvis_bare exported fp32 with the preset's tokenizer (prosody markers added) and Mimi passed as
    --tokenizer and --codec."""
    from voxport.exporter.export import export
    from voxport.exporter.presets import materialize

    out = tmp_path_factory.mktemp("artifacts") / "marvis-tiny"
    src = materialize("marvis-tiny", cache_root)
    export(str(marvis_bare), out, progress=lambda m: None, cache_root=cache_root, dtypes="fp32",
           parts={"tokenizer": str(src / "tokenizer"), "codec": str(src / "codec")})
    return out


def pytest_terminal_summary(terminalreporter, config):
    """The parity and fidelity rows of every preset the session exported (each family's tiny presets),
    in the log: a reader of a CI run sees the numbers, not only a pass."""
    import json

    from voxport.exporter.presets import all_presets

    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return
    presets, root = set(all_presets()), factory.getbasetemp()

    def once(name: str) -> list:  # one report per preset: several tests export or copy the same one
        seen, out = set(), []
        for path in sorted(root.rglob(name), key=lambda p: (len(p.parts), str(p))):
            if path.parent.name in presets and path.parent.name not in seen:
                seen.add(path.parent.name)
                out.append(path)
        return sorted(out, key=lambda p: p.parent.name)

    for path in once("parity.json"):
        r = json.loads(path.read_text())
        worst = max(r["graphs"], key=lambda c: c["rel"])
        terminalreporter.section(f"parity {path.parent.name}: {'PASS' if r['ok'] else 'FAIL'}")
        terminalreporter.write_line(f"{len(r['graphs'])} graph checks, worst relative error {worst['rel']:.2e} in "
                                    f"{worst['graph']}.{worst['output']} (allowed {worst['allowed'] / (worst['scale'] or 1):.0e})")
        for row in r.get("rows", []):
            terminalreporter.write_line(f"{'ok  ' if row['ok'] else 'FAIL'} {row['name']}: {row['summary']}")
    for path in once("fidelity.json"):
        f = json.loads(path.read_text())
        terminalreporter.section(f"fidelity {path.parent.name}: {'PASS' if f['ok'] else 'FAIL'}")
        terminalreporter.write_line(f"worst margin {f['worst']}")
        for d in f["dtypes"]:
            snr = [r for r in f["summary"] if r["dtype"] == d and r["metric"] == "snr_db" and r["threshold"] is not None]
            low = min(snr, key=lambda r: r["value"] - r["threshold"]) if snr else None
            terminalreporter.write_line(
                f"{d}: {f['sizes'][d] / 1e6:.1f} MB, worst SNR {low['value']:.1f} dB in {low['graph']}.{low['output']} "
                f"(gate {low['threshold']})" if low else f"{d}: {f['sizes'][d] / 1e6:.1f} MB")
