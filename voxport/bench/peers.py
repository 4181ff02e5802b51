"""Other engines beside voxport in `voxport bench`, where they exist on the machine. Each entry is a
row or {"skipped": why}: a peer that cannot run here never fails the bench."""

from __future__ import annotations

import os
import shutil

# llama.cpp's Qwen3-TTS runner (talker in libllama, code predictor and codec through mtmd) reads the
# dual-track prompt's text one token per frame, as our frame graph does; only such artifacts compare
LLAMA_TTS_FORMATS = ("dual_track",)


def llama_tts(prompt_format: str) -> dict:
    if prompt_format not in LLAMA_TTS_FORMATS:
        return {"skipped": f"llama-tts runs only the {', '.join(LLAMA_TTS_FORMATS)} prompt format"}
    binary = os.environ.get("VOXPORT_LLAMA_TTS") or shutil.which("llama-tts")
    if not binary:
        return {"skipped": "llama.cpp's llama-tts is not built on this machine (build it with cmake from the "
                           "llama-cpp-python sdist's vendor/llama.cpp, ~10 min on 2 cores, and set "
                           "VOXPORT_LLAMA_TTS)"}
    return {"skipped": f"{binary} is present but voxport has no runner for it yet (convert the checkpoint with "
                       "its convert_hf_to_gguf.py and time llama-tts by hand)"}
