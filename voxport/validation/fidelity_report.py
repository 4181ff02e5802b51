"""fidelity.md (every figure beside its gate) and fidelity.png (SNR per graph per variant, size per variant)."""

from __future__ import annotations

from pathlib import Path


def write(artifact_dir: Path, r: dict) -> None:
    dtypes = r["dtypes"]
    lines = [f"# Fidelity of the precision variants: {r['artifact']}", "",
             f"**Verdict: {'PASS' if r['ok'] else 'FAIL'}** ({', '.join(dtypes)}; reference: fp32 PyTorch on "
             f"`{r['device']}`; {r['seconds']} s). Worst margin: {r['worst']}.", "",
             "Gate: SNR in dB of every float output against fp32 PyTorch, worst over the graph's check cases "
             "(`voxport/exporter/precision.py`); integer outputs: fraction of codes equal. The weights are random, so "
             "logits are nearly flat and argmax flips easily: top-1 agreement below is reported, not gated.", ""]
    if r["failures"]:
        lines += ["## Failures", ""] + [f"- {f}" for f in r["failures"]] + [""]
    lines += ["## Size per variant", "", "| variant | MB |", "|---|---|"]
    lines += [f"| {d} | {r['sizes'][d] / 1e6:.1f} |" for d in dtypes]
    lines += ["", "## Per graph, per output (worst case)", "",
              "| graph | output | variant | metric | value | gate | ok |", "|---|---|---|---|---|---|---|"]
    for s in sorted(r["summary"], key=lambda s: (s["graph"], s["output"], dtypes.index(s["dtype"]))):
        if s["output"].startswith("present.") and s["output"] not in ("present.0.key", "present.0.value"):
            continue  # the KV outputs all behave alike; layer 0 stands for them (all are in fidelity.json)
        lines.append(f"| {s['graph']} | {s['output']} | {s['dtype']} | {s['metric']} | {s['value']:.4g} | "
                     f"{'reported, not gated' if s['threshold'] is None else '>= %s' % s['threshold']} | "
                     f"{'yes' if s['ok'] else '**NO**'} |")
    lines += ["", "## Precision of each part", "", "| graph | " + " | ".join(dtypes) + " |",
              "|---|" + "---|" * len(dtypes)]
    for g, per in r["precision"].items():
        cells = [_precision(per[d]) for d in dtypes]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    if r["agreement"]:
        lines += ["", "## Greedy codes vs fp32 ONNX (not gated)", "",
                  "| variant | mean top-1 agreement | codebook 0 | codebooks 1-31 (min) | frames before first difference |",
                  "|---|---|---|---|---|"]
        for d, a in r["agreement"].items():
            pc = a["per_codebook"]
            lines.append(f"| {d} | {a['mean']:.3f} | {pc[0]:.3f} | {min(pc[1:]):.3f} | "
                         f"{a['frames_before_first_difference']} of {a['frames']} |")
    lines += ["", "![fidelity plot](fidelity.png)", ""]
    (Path(artifact_dir) / "fidelity.md").write_text("\n".join(lines))
    plot(Path(artifact_dir) / "fidelity.png", r)


def _precision(p: dict) -> str:
    if "reason" in p:
        return "fp32 (cannot take it)"
    kept = f", fp32: {', '.join(p['kept_fp32'])}" if p.get("kept_fp32") else ""
    tables = f", tables not quantized: {', '.join(p['unquantized_tables'])}" if p.get("unquantized_tables") else ""
    return f"{p.get('weights', p['dtype'])}{kept}{tables}"


def plot(path: Path, r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    dtypes = r["dtypes"]
    graphs = sorted({s["graph"] for s in r["summary"] if s["metric"] == "snr_db"})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(dtypes)
    for i, d in enumerate(dtypes):
        vals, gates = [], []
        for g in graphs:
            rows = [s for s in r["summary"] if s["graph"] == g and s["dtype"] == d and s["metric"] == "snr_db"
                    and s["threshold"] is not None]  # gated outputs only (sampled ones are in the table)
            # a graph whose float outputs are all sampled in this variant has no bar
            vals.append(min(s["value"] for s in rows) if rows else np.nan)
            gates.append(rows[0]["threshold"] if rows else np.nan)
        x = np.arange(len(graphs)) + (i - (len(dtypes) - 1) / 2) * width
        ax.bar(x, np.minimum(vals, 160), width, label=d)
        ax.scatter(x, gates, color="k", marker="_", s=120, zorder=3)
    ax.set_xticks(np.arange(len(graphs)), graphs)
    ax.set(title="worst SNR per graph vs fp32 PyTorch (black: gate; capped at 160)", ylabel="dB")
    ax.legend(ncol=len(dtypes), fontsize=8)
    bx.bar(dtypes, [r["sizes"][d] / 1e6 for d in dtypes], color="tab:gray")
    bx.set(title="artifact size per variant", ylabel="MB")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
