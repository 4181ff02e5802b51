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
    from exporter.export import export

    out = tmp_path_factory.mktemp("artifacts") / "tiny"
    prebuilt = os.environ.get("VOXPORT_TEST_TINY")  # developers: reuse an export of this tree's tiny preset
    if prebuilt:
        shutil.copytree(prebuilt, out)
    else:
        export("tiny", out, progress=lambda m: None, cache_root=cache_root)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(cache_root) -> Path:
    from exporter.presets import materialize

    return materialize("tiny", cache_root)
