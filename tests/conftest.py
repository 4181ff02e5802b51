"""Shared fixtures: the tiny preset is exported once per session into a temporary directory."""

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
def tiny_checkpoint(cache_root) -> Path:
    from voxport.exporter.presets import materialize

    return materialize("tiny", cache_root)
