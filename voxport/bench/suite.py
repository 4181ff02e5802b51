"""`voxport bench`: every configuration of every preset, one after another from one script, into
one result file (bench/results/<date>-<machine>.json) with its Markdown table and plots.

Result schema (SCHEMA): machine, bandwidth_gbs, settings, and per preset: artifact, roofline per
precision, results per configuration (see `summarize`), browser rows (voxport/bench/web_bench.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

from voxport.bench import machine, peers, roofline
from voxport.bench.compare import interleaved
from voxport.bench.graph_stats import node_counts
from voxport.bench.configs import (BASELINE_WINDOWS, BROWSER_FRAMES, BROWSER_FRAMES_LARGE, BROWSER_WARM_CALLS,
                                   FULL_FRAMES, PEER_WINDOWS, PEER_WINDOWS_QUICK, PROFILE_FRAMES, QUICK_FRAMES,
                                   TEN_WORDS, Config, configs)
from voxport.bench.runners import measure
from voxport import manifest as mf
from voxport.dtypes import DTYPES
from voxport.errors import InputError

SCHEMA = "voxport-bench/1"
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"  # the checkout's bench/results


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def summarize(cfg: Config, raw: dict, frame_ms: float, ref: dict | None, floor: float | None) -> dict:
    row = {"engine": cfg.engine, "dtype": cfg.dtype, "label": cfg.label}
    if "error" in raw:
        return {**row, "error": raw["error"]}
    steady = [1e3 * t for t in raw["frame_s"][1:]] or [1e3 * raw["frame_s"][0]]  # after the prefill frame
    med = statistics.median(steady)
    codec = 1e3 * raw["codec_s_per_frame"]
    row.update({
        "frames": len(raw["frame_s"]),
        "ms_per_frame": {"median": round(med, 2), "p10": round(_pct(steady, 0.1), 2),
                         "p90": round(_pct(steady, 0.9), 2), "min": round(min(steady), 2), "max": round(max(steady), 2)},
        "prefill_frame_ms": round(1e3 * raw["frame_s"][0], 2),
        "codec_ms_per_frame": round(codec, 2),
        "rtf": round((med + codec) / frame_ms, 3),  # compute time / audio time
        "first_audio_ms": round(1e3 * raw["first_audio_s"], 1),
        "peak_rss_mb": round(raw["peak_rss_mb"]), "load_s": round(raw["load_s"], 2),
        "calls_per_frame": raw["calls_per_frame"],
        "codes": raw["codes"],
    })
    if ref and "error" not in ref:
        ref_med = statistics.median(ref["frame_s"][1:] or ref["frame_s"])
        row["speedup_vs_pytorch"] = round(1e3 * ref_med / med, 2)
        from voxport.exporter.parity_kit import compare_codes  # the parity harness's comparison, per frame

        row["codes_vs_pytorch"] = compare_codes(np.asarray(ref["codes"]), np.asarray(raw["codes"]))
    if floor:
        row["roofline_ms"] = round(floor, 2)
        row["x_roofline"] = round(med / floor, 2)
    return row


def _streamed(raw: dict) -> dict:
    """Wall time / audio time of one request through the server's path (runners.streamed)."""
    if "error" in raw:
        return {"error": raw["error"]}
    return {"rtf": round(raw["rtf"], 3), "first_audio_ms": round(1e3 * raw["first_audio_s"], 1),
            "chunk_frames": raw["chunk_frames"], "frames": raw["frames"], "threads": "1+1",
            "other_cores": None if raw["other_cores"] is None else round(raw["other_cores"], 2),
            "peak_rss_mb": round(raw["peak_rss_mb"])}


def _brief(r: dict) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    return f"{r['ms_per_frame']['median']} ms/frame, RTF {r['rtf']}, first audio {r['first_audio_ms']} ms"


def artifacts_for(preset: str, given: Path | None, dtypes: list[str], progress) -> Path:
    """The preset's artifact directory; exported (with the wanted precisions) when it is not there."""
    path = given or Path("artifacts") / preset
    if not (path / "manifest.json").is_file():
        if given:
            raise InputError(f"{path}: no manifest.json; export it first (voxport export ... -o {path})")
        from voxport.exporter.export import export

        progress(f"bench: exporting {preset} to {path} ({','.join(dtypes)})")
        export(preset, path, progress=progress, dtypes=",".join(dtypes))
    return path


def run_preset(preset: str, art: Path, dtypes: list[str], quick: bool, frames: int, threads: int,
               device: str, bandwidth: float, browser: bool, progress, baseline: Path | None = None) -> dict:
    manifest = mf.load(art)
    generation = manifest["runtime"]["generation"]
    have = [d for d in dtypes if d in manifest["dtypes"]]
    missing = sorted(set(dtypes) - set(have))
    floors = {}
    for d in have:
        w = roofline.weight_bytes_per_frame(mf.graph_path(art, manifest, generation["frame"]["graph"], dtype=d))
        floors[d] = {"bytes_read_per_frame": w["read"], "bytes_stored": w["stored"],
                     "floor_ms": round(roofline.floor_ms(w["read"], bandwidth), 2)}
    frame_ms = 1e3 * manifest["runtime"]["frame_size"] / manifest["runtime"]["sample_rate"]
    rows, ref = [], None
    for cfg in configs(have, quick, steps="steps" in generation):
        progress(f"bench: {preset}: {cfg.label}, {frames} frames")
        raw = measure(cfg, art, frames, threads, device)
        if cfg.engine == "pytorch":
            ref = raw
        floor = floors.get(cfg.dtype, {}).get("floor_ms") if cfg.engine != "pytorch" else None
        rows.append(summarize(cfg, raw, frame_ms, None if cfg.engine == "pytorch" else ref, floor))
        if cfg.engine == "fused" and "error" not in raw:
            progress(f"bench: {preset}: {cfg.dtype} streamed as the server streams one request")
            rows[-1]["streamed"] = _streamed(measure(Config("streamed", cfg.dtype), art, frames, threads, device))
        if cfg.engine == "fused" and not quick and "error" not in raw:
            progress(f"bench: {preset}: onnxruntime profile of the fused {cfg.dtype} frame graph")
            rows[-1]["profile"] = measure(Config("profile", cfg.dtype), art, PROFILE_FRAMES, threads, device)
        progress(f"bench:   {_brief(rows[-1])}")
    out = {"preset": preset, "artifact": str(art), "frame_ms": frame_ms, "roofline": floors, "results": rows,
           "graph_nodes": node_counts(art, have),
           "skipped_dtypes": {d: "not in the artifact's manifest" for d in missing}}
    if baseline:
        from voxport.validation.harness import onnx_providers

        shared = [d for d in have if d in mf.load(baseline)["dtypes"]]
        out["vs_baseline"] = [interleaved(art, baseline, d, frames, BASELINE_WINDOWS, threads,
                                          onnx_providers(device), progress) for d in shared]
    out["peers"] = {"llama-tts": _llama_tts(art, manifest, have, quick, frames, threads, device, frame_ms, progress)}
    if browser and generation["prompt"]["format"] in PAGE_PROMPT_FORMATS:
        out["browser"] = _browser(art, have, manifest["source"].get("name") == "tiny", progress)
    elif browser:
        out["browser"] = {"skipped": f"the page does not build the {generation['prompt']['format']} prompt format yet"}
    return out


def _llama_tts(art: Path, manifest: dict, dtypes: list[str], quick: bool, frames: int, threads: int, device: str,
               frame_ms: float, progress) -> dict:
    """llama.cpp's llama-tts on the same checkpoint, text and thread count, its runs interleaved with
    windows of voxport's fused path at the same precision."""
    def voxport_window(dtype: str) -> dict:
        cfg = Config("fused", dtype)
        return summarize(cfg, measure(cfg, art, frames, threads, device), frame_ms, None, None)

    return peers.llama_tts(manifest, dtypes, TEN_WORDS, frames, threads or os.cpu_count(),
                           PEER_WINDOWS_QUICK if quick else PEER_WINDOWS, voxport_window, progress)


# the prompt formats voxport-web builds (web/src/runtime/prompt.js PROMPT_FORMATS)
PAGE_PROMPT_FORMATS = ("chat_template", "dual_track")


def _browser(art: Path, dtypes: list[str], tiny: bool, progress) -> list[dict] | dict:
    try:
        from voxport.bench import web_bench
    except ImportError as e:
        return {"skipped": f"browser benchmark unavailable: {e}"}
    # wasm on a full-size model runs seconds per frame: fewer frames there, and 2 threads only
    frames, threads = (BROWSER_FRAMES, [1, 2]) if tiny else (BROWSER_FRAMES_LARGE, [2])
    progress(f"bench: browser (headless Chromium, wasm {' and '.join(map(str, threads))} threads) on {art}")
    try:
        # the precisions voxport-web chooses among on wasm (web/src/tts.js PREFERRED_DTYPES)
        return web_bench.run([art], dtypes=[d for d in ("fp32", "q8", "q4") if d in dtypes], threads=threads,
                             frames=frames, log=progress, warm_calls=0 if tiny else BROWSER_WARM_CALLS)
    except Exception as e:  # noqa: BLE001 - no Chromium on this machine is a recorded skip, not a crash
        return {"skipped": f"{type(e).__name__}: {e}"}


def run(presets: list[str], dtypes: list[str] | None = None, quick: bool = False, frames: int | None = None,
        threads: int = 0, device: str = "cpu", browser: bool = True, artifacts: Path | None = None,
        out_dir: Path = RESULTS, progress=lambda m: print(m, file=sys.stderr, flush=True),
        baseline: Path | None = None) -> Path:
    if device == "cuda" and not machine.gpu():
        raise InputError("--device cuda: torch sees no CUDA device on this machine")
    if artifacts and len(presets) != 1:
        raise InputError("--artifacts names the directory of one preset; give exactly one --preset")
    if baseline and len(presets) != 1:
        raise InputError("--baseline is an earlier export of one preset; give exactly one --preset")
    if baseline and not (Path(baseline) / "manifest.json").is_file():
        raise InputError(f"--baseline {baseline}: no manifest.json (an artifact directory from an earlier export)")
    dtypes = dtypes or (["fp32", "q4"] if quick else list(DTYPES))
    frames = frames or (QUICK_FRAMES if quick else FULL_FRAMES)
    dirs = [artifacts_for(p, artifacts, dtypes, progress) for p in presets]  # bad paths fail before any timing
    desc = machine.describe()
    cores = threads or desc["cores"]
    progress(f"bench: measuring memory read bandwidth ({cores} threads)")
    bw = round(machine.read_bandwidth(cores), 2)
    result = {"schema": SCHEMA, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": desc, "bandwidth_gbs": bw,
              "settings": {"quick": quick, "frames": frames, "threads": cores, "device": device, "dtypes": dtypes},
              "presets": []}
    for p, art in zip(presets, dirs):
        result["presets"].append(run_preset(p, art, dtypes, quick, frames, threads, device, bw,
                                            browser and not quick, progress, baseline))
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return write(result, out_dir)


def write(result: dict, out_dir: Path) -> Path:
    from voxport.bench import report

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result['date'][:10]}-{machine.machine_name(result['machine'])}"
    if result["settings"]["quick"]:
        stem += "-quick"
    path = out_dir / f"{stem}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    report.write(result, out_dir / stem)
    return path
