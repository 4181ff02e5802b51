"""voxport-web on WebGPU (Chromium's adapter; here SwiftShader, a CPU-backed one, so 2-3 frames: ~7 s a
frame): the static KV cache bound in place as both past and present gives Python's greedy codes (the
second frame reads positions the first call wrote into the bound buffers; unwritten, it attends to
zeros, as onnxruntime-web's wasm build does when bound), and the noise is written into a buffer made
once instead of being uploaded through a new staging buffer every frame."""

from __future__ import annotations

import json

import pytest

from tests.web_helpers import require_browser
from voxport.bench.webgpu_frames import count


def test_webgpu_frame_binds_the_cache_in_place(tiny_dir):
    require_browser()
    r = count(tiny_dir, frames=2, modes=("in_place",))
    if "error" in r:
        pytest.skip(f"WebGPU: {r['error']} (Chromium needs --enable-unsafe-webgpu and an adapter)")
    m = r["modes"]["in_place"]
    assert m["codes_equal_python"], m
    gen = json.loads((tiny_dir / "manifest.json").read_text())["runtime"]["generation"]
    noise_bytes = gen["codebooks"] * gen["noise_vocab"] * 4  # the noise input [1, K, V] float32: 262,528
    assert m["steady"]["bytes"] < noise_bytes, m["steady"]  # 5,160 here; fed back: 267,688


def test_webgpu_captured_frame_makes_no_buffer_and_gives_pythons_codes(tiny_dir):
    """The manifest's capture graph replayed under onnxruntime-web's graph capture: after the prompt
    (uncaptured) and the first captured call (which records), a frame creates no GPU buffer at all
    (uncaptured, 134 a frame here), and the codes are Python's greedy ones (it runs `frame`, this
    `frame_capture`: one replay proves the recorded commands read the bound cache and inputs)."""
    require_browser()
    r = count(tiny_dir, frames=3, modes=("captured",))
    if "error" in r:
        pytest.skip(f"WebGPU: {r['error']} (Chromium needs --enable-unsafe-webgpu and an adapter)")
    m = r["modes"]["captured"]
    assert m["graph_capture"] == "on", m["graph_capture"]
    assert m["codes_equal_python"], m
    replay = m["per_frame"][2]
    assert replay["buffers"] == 0, m["per_frame"]
    assert replay["readbacks"] == 1, replay  # the codes, through a buffer made at the first read
