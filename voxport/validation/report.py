"""parity.md (tables) and parity.png (error per frame, per graph) beside parity.json."""

from __future__ import annotations

from pathlib import Path


def write(artifact_dir: Path, r: dict) -> None:
    lines = [f"# Parity: {r['artifact']}", "",
             f"**Verdict: {'PASS' if r['ok'] else 'FAIL'}** - reference on `{r['device']}`, "
             f"ONNX on {', '.join(r['onnx_providers'])}, {r['seconds']} s", ""]
    if r["failures"]:
        lines += ["## Failures", ""] + [f"- {f}" for f in r["failures"]] + [""]
    lines += ["## Graphs (max |onnx - torch| per output; allowed = atol + rtol x max|torch|)", "",
              "| graph | case | output | shape | max abs | relative | allowed | ok |", "|---|---|---|---|---|---|---|---|"]
    for c in r["graphs"]:
        case = ", ".join(f"{k}={v}" for k, v in c["case"].items())
        lines.append(f"| {c['graph']} | {case} | {c['output']} | {c['shape']} | {c['max_abs']:.2e} | "
                     f"{c['rel']:.2e} | {c['allowed']:.2e} | {'yes' if c['ok'] else '**NO**'} |")
    lines += ["", "## Generation (the family's end-to-end cases)", "", "| check | result |", "|---|---|",
              *_generation_rows(r), "", "![parity plot](parity.png)", ""]
    (Path(artifact_dir) / "parity.md").write_text("\n".join(lines))
    plot(Path(artifact_dir) / "parity.png", r)


def _generation_rows(r: dict) -> list[str]:
    """A row per case the family ran (each family declares its own; absent cases have no row)."""
    rows = []
    if "greedy" in r:
        g = r["greedy"]
        rows.append(f"| greedy codes, {g['frames_reference']} frames vs the reference generate | "
                    f"{'identical' if g['identical'] else 'differ at frame %s' % g['first_mismatch_frame']} |")
    for name, c in r.get("prompt", {}).items():
        rows.append(f"| prompt embeddings ({name.replace('_', ' ')}, {c['positions']} positions) vs the reference | "
                    f"max abs {c['max_abs']:.2e}, per-frame text {c['trailing_max_abs']:.2e} (allowed {c['allowed']:.0e}) |")
    if "voice_prompt" in r:
        v = r["voice_prompt"]
        rows.append(f"| voice prompt ({v['context_frames']} context frames), {v['frames_reference']} frames | "
                    f"{'identical' if v['identical'] else 'differ at frame %s' % v['first_mismatch_frame']} |")
    if "waveform" in r:
        w = r["waveform"]
        rows.append(f"| waveform, {w['samples']} samples | max abs {w['max_abs']:.2e}, relative {w['rel']:.2e} "
                    f"(allowed relative {w['allowed_rel']:.0e}) |")
    if "sampling" in r:
        s = r["sampling"]
        rows.append(f"| sampling, seed reproducible | {s['reproducible']} (another seed differs: {s['other_seed_differs']}) |")
    if "steps" in r:
        st = r["steps"]
        rows.append(f"| step graphs vs the fused frame graph, {st['frames']} frames, same noise | greedy identical: "
                    f"{st['greedy']}, sampled (T={st['temperature']}, top-k {st['top_k']}, top-p {st['top_p']}) "
                    f"identical: {st['sampled']} |")
    if "fused" in r:
        rows += _streaming_rows(r)
    elif "stream_decode" in r:
        sd = r["stream_decode"]
        chunks = ", ".join(f"{c}: {v['rel']:.1e}" for c, v in sd["chunks"].items())
        rows.append(f"| streaming decode vs batch, {sd['frames']} frames, relative error per chunk size | {chunks} "
                    f"(allowed {sd['allowed_rel']:.0e}) |")
    return rows


def _streaming_rows(r: dict) -> list[str]:
    f, fs, sd, j = r["fused"], r["fused_sampling"], r["stream_decode"], r["joins"]
    chunks = ", ".join(f"{c}: {v['rel']:.1e}" for c, v in sd["chunks"].items())
    return [
        f"| fused frame graph, {f['frames_reference']} greedy frames | "
        f"{'identical' if f['identical'] else 'differ at frame %s' % f['first_mismatch_frame']} to transformers; "
        f"identical to step graphs: {f['identical_to_step_graphs']} |",
        f"| fused sampling (T={fs['temperature']}, top-k {fs['top_k']}, top-p {fs.get('top_p') or 1}), "
        f"{fs['frames']} frames, same noise | "
        f"equals PyTorch: {fs['fused_equals_torch']}, equals step graphs: {fs['fused_equals_step_graphs']}, "
        f"another seed differs: {fs['other_seed_differs']} |",
        f"| streaming decode vs batch, {sd['frames']} frames, relative error per chunk size | {chunks} "
        f"(allowed {sd['allowed_rel']:.0e}) |",
        f"| {j['joins']} utterance joins: largest sample step at a join / inside / with codec reset | "
        f"{_g(j['join_step_max'])} / {_g(j['inside_step_max'])} / {_g(j['reset_join_step_max'])} |",
    ]


def _g(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def plot(path: Path, r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for case in ("greedy", "voice_prompt"):
        if case in r:
            ax.plot(r[case]["agreement_per_frame"], label=case.replace("_", " "))
    ax.set(title="code agreement per frame (ONNX vs transformers)", xlabel="frame", ylabel="fraction equal",
           ylim=(-0.05, 1.05))
    ax.legend()
    ax = axes[1]
    if "waveform" in r:
        per_frame = [max(x, 1e-12) for x in r["waveform"]["max_abs_per_frame"]]
        ax.semilogy(per_frame, marker=".", label="batch decode vs PyTorch")
        ax.axhline(r["waveform"]["allowed_rel"] * r["waveform"]["scale"], color="r", ls="--", label="allowed (batch)")
    for chunk, row in r.get("stream_decode", {}).get("chunks", {}).items():
        ax.semilogy([max(x, 1e-12) for x in row["max_abs_per_frame"]], lw=0.7, label=f"streaming, chunk {chunk}")
    ax.set(title="waveform max |diff| per 80 ms frame", xlabel="frame", ylabel="max abs diff")
    ax.legend()
    ax = axes[2]
    worst: dict[str, tuple[float, float]] = {}
    for c in r["graphs"]:
        key = c["graph"]
        rel, allowed_rel = c["rel"], (c["allowed"] / c["scale"] if c["scale"] else c["allowed"])
        if key not in worst or rel > worst[key][0]:
            worst[key] = (rel, allowed_rel)
    names = list(worst)
    ax.bar(names, [max(worst[n][0], 1e-12) for n in names], label="worst relative error")
    ax.scatter(names, [max(worst[n][1], 1e-12) for n in names], color="r", marker="_", s=400, label="allowed")
    ax.set_yscale("log")
    ax.tick_params(axis="x", labelrotation=20)
    ax.text(0.02, 0.02, "exact outputs (codes) sit at the floor: 0 difference", transform=ax.transAxes, fontsize=8)
    ax.set(title="per graph: worst relative error", ylabel="max abs / max |torch|")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
