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


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, cache_root) -> Path:
    from voxport.exporter.export import export

    out = tmp_path_factory.mktemp("artifacts") / "tiny"
    if os.environ.get("VOXPORT_TEST_TINY_DIR"):  # development: reuse an export (copied; tests write into it)

        shutil.copytree(os.environ["VOXPORT_TEST_TINY_DIR"], out)
        return out
    export("tiny", out, progress=lambda m: None, cache_root=cache_root)  # all five precision variants
    return out


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory, cache_root) -> Path:
    from voxport.exporter.export import export

    out = tmp_path_factory.mktemp("artifacts") / "qwen3-tts-tiny"
    if os.environ.get("VOXPORT_TEST_QWEN_DIR"):  # development: reuse an export (copied; tests write into it)
        shutil.copytree(os.environ["VOXPORT_TEST_QWEN_DIR"], out)
        return out
    export("qwen3-tts-tiny", out, progress=lambda m: None, cache_root=cache_root)
    return out


@pytest.fixture(scope="session")
def qwen_base_dir(tmp_path_factory, cache_root) -> Path:
    """The Base (voice-clone) tiny preset, fp32 only: its speaker encoder and in-context prompt."""
    from voxport.exporter.export import export

    out = tmp_path_factory.mktemp("artifacts") / "qwen3-tts-tiny-base"
    if os.environ.get("VOXPORT_TEST_QWEN_BASE_DIR"):  # development: reuse an export (copied; tests write into it)
        shutil.copytree(os.environ["VOXPORT_TEST_QWEN_BASE_DIR"], out)
        return out
    export("qwen3-tts-tiny-base", out, progress=lambda m: None, cache_root=cache_root, dtypes="fp32")
    return out


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
