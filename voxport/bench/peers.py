"""Other engines beside voxport in `voxport bench`, where they exist on the machine. Each entry is
{"rows": [...]} or {"skipped": why}: a peer that cannot run here never fails the bench.

llama.cpp's `llama-tts` (bench/build_llama_tts.sh builds it): the artifact's source checkpoint,
converted by llama.cpp's own convert_hf_to_gguf.py (and llama-quantize), run on the same text with the
same thread count. Whether a checkpoint can take that road is its family's answer
(Family.llama_tts / llama_tts_refusal), never a name here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

# voxport precision -> (talker type for llama-quantize, mmproj type for the converter): the code
# predictor and codec stay 8-bit beside a 4-bit talker (the converter keeps its F16/F32 convs)
LLAMA_TYPES = {"fp32": ("F32", "f32"), "q8": ("Q8_0", "q8_0"), "q4": ("Q4_K_M", "q8_0")}
BUILD_HINT = ("build it with `make llama-tts` (bench/build_llama_tts.sh: cmake on the llama-cpp-python sdist's "
              "vendor/llama.cpp, ~10-20 min on 2 cores) and set VOXPORT_LLAMA_CPP to the tree it prints")
# its timing lines (tools/tts/tts.cpp)
_FRAMES = re.compile(r"generated (\d+) frames, (\d+) bytes of WAV audio \((\d+) Hz\)")
_TIMINGS = re.compile(r"timings: prompt eval ([\d.]+)s \+ generation ([\d.]+)s \+ vocoder ([\d.]+)s = total ([\d.]+)s")
_AUDIO = re.compile(r"output audio = ([\d.]+)s")
# llama-tts decodes the codes in windows of this many frames (tools/mtmd/mtmd-helper-gen.cpp); fewer
# frames and the codec runs only at the end, in its "vocoder" time
CODEC_WINDOW = 72
# its context (-c): by default llama-tts takes the model's whole 32,768 positions, a 3.8 GB f16 KV cache
# at 0.6B (peak RSS 5.9 GB measured for 24 frames); a 10-word prompt and its frames need a few hundred
CONTEXT = 2048


class Tools(NamedTuple):
    tts: Path  # llama-tts
    quantize: Path  # llama-quantize
    tree: Path  # the llama.cpp source tree: convert_hf_to_gguf.py and gguf-py


def find_llama_cpp() -> tuple[Tools | None, str | None]:
    """(llama.cpp's tools, why not): llama-tts from $VOXPORT_LLAMA_TTS, else $VOXPORT_LLAMA_CPP's
    build/bin, else PATH; the tree from $VOXPORT_LLAMA_CPP, else the one llama-tts was built in;
    llama-quantize from the tree's build/bin, else beside llama-tts."""
    tree = os.environ.get("VOXPORT_LLAMA_CPP")
    binary = os.environ.get("VOXPORT_LLAMA_TTS") or (tree and str(Path(tree) / "build" / "bin" / "llama-tts"))
    binary = binary if binary and Path(binary).is_file() else shutil.which("llama-tts")
    if not binary:
        return None, f"llama.cpp's llama-tts is not built on this machine ({BUILD_HINT})"
    binary = Path(binary).resolve()
    tree = Path(tree) if tree else binary.parents[2]  # <tree>/build/bin/llama-tts
    if not (tree / "convert_hf_to_gguf.py").is_file():
        return None, (f"{binary} has no llama.cpp source tree beside it (no {tree}/convert_hf_to_gguf.py to "
                      "convert the checkpoint with): set VOXPORT_LLAMA_CPP to the tree it was built from")
    quantize = next((q for q in (tree / "build" / "bin" / "llama-quantize", binary.parent / "llama-quantize")
                     if q.is_file()), None)
    if not quantize:
        return None, f"no llama-quantize in {tree}/build/bin or beside {binary} ({BUILD_HINT})"
    return Tools(binary, quantize, tree), None


def parse_log(text: str) -> dict:
    """llama-tts's own timings -> frames, seconds per phase, audio seconds (ValueError if absent)."""
    frames, timings, audio = _FRAMES.search(text), _TIMINGS.search(text), _AUDIO.search(text)
    if not (frames and timings):
        raise ValueError("llama-tts printed no timings line")
    prompt_s, gen_s, vocoder_s, total_s = map(float, timings.groups())
    return {"frames": int(frames.group(1)), "sample_rate": int(frames.group(3)), "prompt_s": prompt_s,
            "generation_s": gen_s, "vocoder_s": vocoder_s, "total_s": total_s,
            "audio_s": float(audio.group(1)) if audio else None}


def row_from_runs(runs: list[dict], talker: str, mmproj: str, dtype: str, frame_ms: float) -> dict:
    """One bench row from llama-tts runs (each parse_log's dict + wall_s, peak_rss_mb): medians."""
    frames = runs[0]["frames"]
    if frames < 1:
        raise ValueError("llama-tts generated no frame")
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    per_frame = [1e3 * r["generation_s"] / r["frames"] for r in runs]
    codec = 1e3 * med("vocoder_s") / frames
    row = {"engine": "llama.cpp", "dtype": dtype, "label": f"llama-tts {talker} (+{mmproj.upper()} predictor/codec)",
           "frames": frames, "runs": len(runs),
           "ms_per_frame": {"median": round(statistics.median(per_frame), 2), "min": round(min(per_frame), 2),
                            "max": round(max(per_frame), 2)},
           "prefill_ms": round(1e3 * med("prompt_s"), 1),
           "codec_ms_per_frame": round(codec, 2),
           "rtf": round((statistics.median(per_frame) + codec) / frame_ms, 3),
           # no streaming: the WAV exists only once every frame is generated and decoded
           "first_audio_ms": round(1e3 * med("total_s"), 1), "streams": False,
           "peak_rss_mb": round(med("peak_rss_mb")), "load_s": round(med("wall_s") - med("total_s"), 2)}
    if frames >= CODEC_WINDOW:
        row["note"] = (f"{frames} frames: codec windows of {CODEC_WINDOW} frames ran inside the generation time, "
                       "so ms/frame includes part of the codec")
    return row


def _run(cmd: list[str], timeout: float) -> tuple[int, str, float, float]:
    """(exit code, stdout+stderr, wall seconds, peak RSS MB of that child alone: wait4's rusage)."""
    with tempfile.TemporaryFile() as log:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = t + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                _, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        log.seek(0)
        return p.returncode, log.read().decode(errors="replace"), wall, usage.ru_maxrss / 1024


def _last_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])[:400]


def _convert(tree: Path, quantize: Path, ckpt: Path, work: Path, talker: str, mmproj: str, progress) -> tuple[Path, Path]:
    """The checkpoint as GGUFs (kept in `work`): the talker at `talker`, the rest (code predictor,
    codec, speaker encoder: llama.cpp's mmproj) at `mmproj`."""
    import sys

    work.mkdir(parents=True, exist_ok=True)
    convert = [sys.executable, str(tree / "convert_hf_to_gguf.py"), str(ckpt)]
    f32, tk, mm = work / "talker-F32.gguf", work / f"talker-{talker}.gguf", work / f"mmproj-{mmproj}.gguf"
    steps = [(f32, lambda out: [*convert, "--outtype", "f32", "--outfile", out]),
             (mm, lambda out: [*convert, "--mmproj", "--outtype", mmproj, "--outfile", out]),
             (tk, lambda out: [str(quantize), str(f32), out, talker])]
    for out, cmd in steps:
        if out.is_file():
            continue
        progress(f"bench: llama.cpp: writing {out}")
        part = out.with_name(out.name + ".partial")
        p = subprocess.run(cmd(str(part)), capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(tree / "gguf-py")})  # the tree's own gguf
        if p.returncode or not part.is_file():
            part.unlink(missing_ok=True)
            tool = "llama-quantize" if out is tk else "convert_hf_to_gguf.py"
            raise RuntimeError(f"{tool} failed (exit {p.returncode}): {_last_lines(p.stderr or p.stdout)}")
        part.replace(out)
    return tk, mm


def _work_dir(ckpt: Path) -> Path:
    """Where a checkpoint's GGUFs are kept: keyed on its path and its weights' sizes and times."""
    from voxport.fsutil import cache_root

    stamp = [str(ckpt.resolve())] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                     for p in sorted(ckpt.glob("*.safetensors"))]
    return cache_root() / "llama.cpp" / f"{ckpt.name}-{hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:12]}"


def runs_family(manifest: dict) -> str | None:
    """Why llama-tts runs no checkpoint of the artifact's family (None: it runs some), from the
    manifest alone: nothing is resolved or built for a family it never runs."""
    from voxport.exporter.families import family_for

    model_type = manifest["source"].get("model_type")
    family = family_for({"model_type": model_type})
    return None if family and family.llama_tts else f"llama.cpp's llama-tts runs no {model_type} checkpoint"


def refusal(manifest: dict) -> tuple[Path | None, str | None]:
    """(the source checkpoint directory, why llama-tts cannot run it): its family decides."""
    from voxport.exporter.checkpoint import family_of
    from voxport.validation.harness import source_checkpoint

    why = runs_family(manifest)
    if why:
        return None, why
    try:
        ckpt = source_checkpoint(manifest).path
    except Exception as e:  # noqa: BLE001 - a source that cannot be found again is a skip reason
        return None, f"the artifact's source checkpoint cannot be found again ({e})"
    why = family_of(ckpt).llama_tts_refusal(ckpt, json.loads((ckpt / "config.json").read_text()))
    return ckpt, why


def llama_tts(manifest: dict, dtypes: list[str], text: str, frames: int, threads: int, windows: int,
              voxport_window=None, progress=lambda m: None, timeout: float = 1800) -> dict:
    """llama-tts rows for the bench's precisions that have a llama.cpp counterpart (LLAMA_TYPES),
    `windows` runs each; `voxport_window(dtype)` (a row of voxport's own, or None) runs between them
    so both engines see the same machine load."""
    why = runs_family(manifest)  # first: true whether llama.cpp is built here or not
    if why:
        return {"skipped": why}
    tools, why = find_llama_cpp()
    if why:
        return {"skipped": why}
    ckpt, why = refusal(manifest)
    if why:
        return {"skipped": why}
    wanted = [d for d in dtypes if d in LLAMA_TYPES]
    if not wanted:
        return {"skipped": f"no llama.cpp counterpart for {', '.join(dtypes)} (measured: {', '.join(LLAMA_TYPES)})"}
    frame_ms = 1e3 * manifest["runtime"]["frame_size"] / manifest["runtime"]["sample_rate"]
    rows, work = [], _work_dir(ckpt)
    for dtype in wanted:
        talker, mmproj = LLAMA_TYPES[dtype]
        try:
            tk, mm = _convert(tools.tree, tools.quantize, ckpt, work, talker, mmproj, progress)
        except RuntimeError as e:
            rows.append({"engine": "llama.cpp", "dtype": dtype, "label": f"llama-tts {talker}", "error": str(e)})
            continue
        runs, mine, error = [], [], None
        for w in range(windows):
            progress(f"bench: llama-tts {talker} window {w + 1}/{windows}, {frames} frames, {threads} threads")
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [str(tools.tts), "-m", str(tk), "-mm", str(mm), "-p", text, "-o", str(Path(tmp) / "out.wav"),
                       "-n", str(frames), "-c", str(CONTEXT), "-t", str(threads), "-tb", str(threads), "--temp", "0", "--top-k", "1",
                       "--seed", "0"]
                code, log, wall, rss = _run(cmd, timeout)
                if code and "amx" in log.lower():  # its AMX kernels crash at warm-up on some CPUs: -nr avoids them
                    code, log, wall, rss = _run(cmd + ["-nr"], timeout)
            try:
                if code:
                    raise ValueError(f"exit {code}")
                runs.append({**parse_log(log), "wall_s": wall, "peak_rss_mb": rss})
            except ValueError as e:
                error = f"llama-tts failed ({e}): {_last_lines(log)}"
                break
            if voxport_window:
                mine.append(voxport_window(dtype))
        if error:
            rows.append({"engine": "llama.cpp", "dtype": dtype, "label": f"llama-tts {talker}", "error": error})
            continue
        row = row_from_runs(runs, talker, mmproj, dtype, frame_ms)
        good = [m for m in mine if m and "error" not in m]
        if good:  # voxport's own windows, interleaved with these runs
            row["voxport_interleaved"] = {
                "ms_per_frame": round(statistics.median(m["ms_per_frame"]["median"] for m in good), 2),
                "codec_ms_per_frame": round(statistics.median(m["codec_ms_per_frame"] for m in good), 2),
                "first_audio_ms": round(statistics.median(m["first_audio_ms"] for m in good), 1),
                "peak_rss_mb": round(statistics.median(m["peak_rss_mb"] for m in good)), "windows": len(good)}
        row["load_average"] = [round(x, 2) for x in os.getloadavg()]
        rows.append(row)
    return {"rows": rows, "checkpoint": str(ckpt), "llama_tts": str(tools.tts)}
