"""A result file as people read it: one Markdown table per preset, and two plots per result
(per-frame time per configuration with its spread and roofline; where the time of a frame goes)."""

from __future__ import annotations

from pathlib import Path

COLUMNS = ["configuration", "ms/frame (median)", "p10-p90", "x PyTorch", "RTF", "first audio ms",
           "codec ms/frame", "streamed: RTF, first audio ms (other cores busy)", "peak RSS MB", "calls/frame",
           "codes = PyTorch", "x roofline"]


def _cells(r: dict) -> list[str]:
    if "error" in r:
        return [r["label"], f"error: {r['error']}"] + [""] * (len(COLUMNS) - 2)
    m, same = r["ms_per_frame"], r.get("codes_vs_pytorch")
    codes = "" if same is None else ("identical" if same["identical"] else
                                     f"{sum(a == 1.0 for a in same['agreement_per_frame'])}/{r['frames']} frames")
    return [r["label"], f"{m['median']:.1f}", f"{m['p10']:.0f}-{m['p90']:.0f}", str(r.get("speedup_vs_pytorch", "1.00")),
            f"{r['rtf']:.2f}", f"{r['first_audio_ms']:.0f}", f"{r['codec_ms_per_frame']:.1f}", _streamed(r.get("streamed")),
            str(r["peak_rss_mb"]),
            str(r["calls_per_frame"] or "-"), codes, str(r.get("x_roofline", "-"))]


def _streamed(st: dict | None) -> str:
    if not st:
        return "-"
    if "error" in st:
        return f"error: {st['error']}"
    busy = "" if st["other_cores"] is None else f" ({st['other_cores']:.1f})"
    return f"{st['rtf']:.2f}, {st['first_audio_ms']:.0f}{busy}"


def markdown(result: dict, stem: str) -> str:
    mach, s = result["machine"], result["settings"]
    lines = [f"# voxport bench, {result['date']}", "",
             f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gb']} GB, GPU: {mach['gpu'] or 'none'}; "
             f"load average before {mach['load_average']}, after {mach.get('load_average_after')}. "
             f"Libraries: {', '.join(f'{k} {v}' for k, v in mach['libraries'].items())}.", "",
             f"Settings: device {s['device']}, {s['threads']} threads, {s['frames']} frames per generation "
             f"(the prefill frame is reported apart), greedy, quick={s['quick']}. Measured read bandwidth "
             f"{result['bandwidth_gbs']} GB/s (weights streamed through a matrix-vector product).", ""]
    for p in result["presets"]:
        lines += [f"## {p['preset']}", "", f"Artifacts: `{p['artifact']}`. One frame is {p['frame_ms']:.0f} ms of audio; "
                  "RTF = (median frame time + codec time per frame, one frame per codec call) / frame duration; "
                  "streamed: wall time / audio time of one request as the server streams it (frames in the engine's "
                  "thread, the manifest's codec chunk schedule decoded beside them, one onnxruntime thread per "
                  "session), with the cores other processes kept busy meanwhile.", "",
                  "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in p["results"]]
        lines += ["", "codes = PyTorch: fp32 must be identical (greedy); below fp32 the codes of random-weight "
                  "presets are not expected to match (flat logits flip argmaxes; fidelity.md gates the variants "
                  "by SNR instead). x roofline: median frame time / the floor below."]
        lines += ["", "Roofline (weights one fused frame reads / measured bandwidth):", ""]
        lines += [f"- {d}: {v['bytes_read_per_frame'] / 1e6:.0f} MB read per frame ({v['bytes_stored'] / 1e6:.0f} MB "
                  f"stored) -> at least {v['floor_ms']:.1f} ms/frame" for d, v in p["roofline"].items()]
        for d, why in p.get("skipped_dtypes", {}).items():
            lines.append(f"- {d}: skipped ({why})")
        lines += ["", *_graph_lines(p), *_baseline_lines(p.get("vs_baseline")), *_browser_lines(p.get("browser")),
                  *_peer_lines(p), ""]
        lines += [f"![per-frame time]({Path(stem).name}-{p['preset']}-frame.png)",
                  f"![where the time goes]({Path(stem).name}-{p['preset']}-stages.png)", ""]
    return "\n".join(lines)


def _graph_lines(p: dict) -> list[str]:
    nodes = p.get("graph_nodes") or {}
    if not nodes:
        return []
    graphs = list(next(iter(nodes.values())))
    kernels = {r["dtype"]: r["profile"] for r in p["results"] if r.get("profile") and "error" not in r["profile"]}
    lines = ["Graph sizes (nodes per file; kernels run per call from onnxruntime's profile):", "",
             "| precision | " + " | ".join(graphs) + " | frame kernels/frame | codec kernels/call |",
             "|" + "---|" * (len(graphs) + 3)]
    for d, row in nodes.items():
        k = kernels.get(d, {})
        lines.append(f"| {d} | " + " | ".join(str(row[g]) for g in graphs)
                     + f" | {k.get('kernels_per_frame', '-')} | {k.get('codec_kernels_per_call', '-')} |")
    return lines + [""]


def _baseline_lines(rows) -> list[str]:
    if not rows:
        return []
    lines = ["Against an earlier export (interleaved in one process, median of the windows' medians):", "",
             "| precision | frame nodes (earlier -> now) | ms/frame earlier | ms/frame now | speed-up | windows now "
             "| prefill ms earlier -> now | first audio ms earlier -> now | codes identical |", "|" + "---|" * 9]
    for r in rows:
        b, c = r["baseline"], r["current"]
        lines.append(f"| {r['dtype']} | {b['frame_graph_nodes']} -> {c['frame_graph_nodes']} | {b['frame_ms']} | "
                     f"{c['frame_ms']} | {r['speedup']}x | {c['frame_ms_windows']} | {b['prefill_ms']} -> "
                     f"{c['prefill_ms']} | {b['first_audio_ms']} -> {c['first_audio_ms']} | {r['codes_identical']} |")
    return lines + [""]


def _peer_lines(preset: dict) -> list[str]:
    lines = []
    for name, peer in preset.get("peers", {}).items():
        if "skipped" in peer:
            lines.append(f"{name}: skipped ({peer['skipped']}).")
            continue
        lines += [f"{name} on the same checkpoint, text and threads, its runs interleaved with voxport's fused path "
                  "(first audio: it writes the WAV only at the end):", "",
                  "| configuration | ms/frame | codec ms/frame | RTF | first audio ms | peak RSS MB | voxport same windows "
                  "(ms/frame + codec, first audio, RSS) | voxport faster per frame / codec | load average |",
                  "|" + "---|" * 9]
        for r in peer["rows"]:
            if "error" in r:
                lines.append(f"| {r['label']} | error: {r['error']} |" + " |" * 7)
                continue
            v = r.get("voxport_interleaved")
            mine = (f"{v['ms_per_frame']} + {v['codec_ms_per_frame']}, {v['first_audio_ms']:.0f} ms, {v['peak_rss_mb']} MB"
                    if v else "-")
            ratio = (f"{r['ms_per_frame']['median'] / v['ms_per_frame']:.2f}x / "
                     f"{r['codec_ms_per_frame'] / v['codec_ms_per_frame']:.2f}x" if v else "-")
            lines.append(f"| {r['label']} | {r['ms_per_frame']['median']:.1f} | {r['codec_ms_per_frame']:.1f} | "
                         f"{r['rtf']:.2f} | {r['first_audio_ms']:.0f} | {r['peak_rss_mb']} | {mine} | {ratio} | "
                         f"{r.get('load_average', '-')} |")
        lines.append("")
    return lines


def _browser_lines(rows) -> list[str]:
    if rows is None:
        return []
    if isinstance(rows, dict):
        return [f"Browser: skipped ({rows.get('skipped')})."]
    if not rows:
        return ["Browser: no rows."]
    keys = list(dict.fromkeys(k for r in sorted(rows, key=lambda r: "error" in r) for k in r
                              if not isinstance(r[k], (list, dict))))  # a failed row has fewer keys
    return ["Browser (headless Chromium):", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
            *["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]]


def _finish(plt, fig, ax, labels: list[str], frame_ms: float, real_time: str, xlabel: str, title: str,
            path: Path) -> Path:
    """What both plots share: the real-time line, labels top to bottom, legend, file."""
    ax.axvline(frame_ms, color="r", ls="--", label=real_time)
    ax.set_yticks(list(range(len(labels))), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plots(result: dict, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for p in result["presets"]:
        rows = [r for r in p["results"] if "error" not in r]
        if not rows:
            continue
        labels = [r["label"].replace("voxport ", "") for r in rows]
        med = [r["ms_per_frame"]["median"] for r in rows]
        lo = [m - r["ms_per_frame"]["p10"] for m, r in zip(med, rows)]
        hi = [r["ms_per_frame"]["p90"] - m for m, r in zip(med, rows)]
        y = range(len(rows))
        name = stem.parent / f"{stem.name}-{p['preset']}"

        fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
        ax.barh(y, med, xerr=[lo, hi], color=["#888" if r["engine"] == "pytorch" else "#3a7" for r in rows])
        for i, r in enumerate(rows):
            if "roofline_ms" in r:
                ax.plot([r["roofline_ms"]] * 2, [i - 0.4, i + 0.4], color="k", lw=2)
        out.append(_finish(plt, fig, ax, labels, p["frame_ms"], f"real time ({p['frame_ms']:.0f} ms of audio)",
                           "ms per frame (median, p10-p90); black tick: memory-bandwidth floor",
                           f"{p['preset']}: per-frame time", Path(f"{name}-frame.png")))

        fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
        codec = [r["codec_ms_per_frame"] for r in rows]
        ax.barh(y, med, label="generation (per frame)", color="#3a7")
        ax.barh(y, codec, left=med, label="codec decode (per frame)", color="#e93")
        for i, r in enumerate(rows):
            ax.text(med[i] + codec[i], i, f"  first audio {r['first_audio_ms']:.0f} ms", va="center", fontsize=8)
        out.append(_finish(plt, fig, ax, labels, p["frame_ms"], "real time", "ms per 80 ms frame",
                           f"{p['preset']}: where the time of a frame goes", Path(f"{name}-stages.png")))
    return out


def write(result: dict, stem: Path) -> None:
    stem.with_suffix(".md").write_text(markdown(result, str(stem)))
    plots(result, stem)
