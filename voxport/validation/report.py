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
    """A row per case the family ran, as the family worded it."""
    return [f"| {row['name'].replace('_', ' ')} | {'' if row['ok'] else '**FAIL** '}{row['summary']} |"
            for row in r.get("rows", [])]


def plot(path: Path, r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for row in r.get("rows", []):
        if "agreement_per_frame" in r.get(row["name"], {}):
            ax.plot(r[row["name"]]["agreement_per_frame"], label=row["name"].replace("_", " "))
    ax.set(title="code agreement per frame (ONNX vs transformers)", xlabel="frame", ylabel="fraction equal",
           ylim=(-0.05, 1.05))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax = axes[1]
    if "waveform" in r:
        per_frame = [max(x, 1e-12) for x in r["waveform"]["max_abs_per_frame"]]
        ax.semilogy(per_frame, marker=".", label="batch decode vs PyTorch")
        ax.axhline(r["waveform"]["allowed_rel"] * r["waveform"]["scale"], color="r", ls="--", label="allowed (batch)")
    for chunk, row in r.get("stream_decode", {}).get("chunks", {}).items():  # parity_kit.stream_decode_case
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
