"""Fidelity of the precision variants (fp16, q8, q4, q4f16) against fp32 PyTorch, per graph, per output.

Generic over graphs: for every graph the family declares, at the spec's check sizes, every float output
is scored as signal-to-noise in dB against the PyTorch module, and every integer output as the fraction
of values equal. Gates (voxport/exporter/precision.py) are on SNR and code agreement. End to end, greedy
generation from a fixed prompt set is compared with the fp32 ONNX run (identical to transformers'
generate, which `parity` proves): top-1 agreement per codebook and frames before the first differing
code. Random weights give flat logits, so argmax flips easily: that is reported, not gated.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from voxport.exporter.precision import CODE_AGREEMENT_MIN, GraphPrecision, snr_threshold
from voxport.validation.graphs import reference_cases, run_graph
from voxport import dtypes as dt
from voxport import manifest as mf
from voxport.errors import ArtifactError

PROMPTS = ["The quick brown fox jumps over the lazy dog.", "Hello, how are you today?",
           "Numbers like 3.14 and 42 are hard to say."]


SNR_CAP_DB = 300.0  # identical outputs (JSON has no infinity)


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (ref - got)^2), in float64, within +-SNR_CAP_DB."""
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    noise = float(np.sum((ref - got) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0 or not np.isfinite(noise):
        return -SNR_CAP_DB
    return float(np.clip(10 * np.log10(signal / noise), -SNR_CAP_DB, SNR_CAP_DB))


def score_graph(spec, sessions: dict, policy: GraphPrecision, device: str = "cpu") -> list[dict]:
    """One row per (output, dtype, case): the SNR (float outputs) or agreement (integer outputs).
    The policy's sampled outputs (codes and what follows from them) are gated in fp32 only."""
    rows, ungated = [], policy.sampled_outputs
    names = [s.name for s in spec.outputs]
    for case, feeds, ref in reference_cases(spec, device):
        for dtype, sess in sessions.items():
            got = run_graph(spec, sess, feeds)
            for name, r, g in zip(names, ref, got):
                row = {"graph": spec.name, "output": name, "dtype": dtype, "case": case, "shape": list(r.shape)}
                if r.shape != g.shape:
                    row.update(metric="shape", value=None, ok=False)
                elif r.dtype.kind == "f":
                    row.update(metric="snr_db", value=snr_db(r, g), threshold=snr_threshold(policy, dtype))
                    row["ok"] = bool(row["value"] >= row["threshold"])
                else:
                    row.update(metric="agreement", value=float(np.mean(r == g)) if r.size else 1.0,
                               threshold=CODE_AGREEMENT_MIN[dtype])
                    row["ok"] = bool(row["value"] >= row["threshold"])
                if name in ungated and dtype != "fp32" and row.get("value") is not None:
                    row.update(threshold=None, ok=True, note="reported, not gated")
                rows.append(row)
    return rows


def worst(rows: list[dict]) -> list[dict]:
    """Per (graph, output, dtype): the worst case (lowest value), with how many cases it covers."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (r["graph"], r["output"], r["dtype"])
        v = r["value"] if r["value"] is not None else float("-inf")
        if key not in out or v < out[key]["value"]:
            out[key] = {**r, "value": v, "cases": 0}
        out[key]["cases"] += 1
    return list(out.values())


def agreement(runtimes: dict, frames: int) -> dict:
    """Greedy codes of each variant vs fp32 over PROMPTS, from the fused frame graph (what speak, the API
    and the page run): per codebook agreement and frames to divergence."""
    from voxport.exporter.parity_kit import fused_codes

    ref = {p: fused_codes(runtimes["fp32"], frames, text=p) for p in PROMPTS}
    out = {}
    for dtype, rt in runtimes.items():
        eq, first = [], []
        for p in PROMPTS:
            got = fused_codes(rt, frames, text=p)
            n = min(len(got), len(ref[p]))
            same = got[:n] == ref[p][:n]  # [frames, K]
            eq.append(same)
            bad = np.flatnonzero(~same.all(axis=1))
            first.append(int(bad[0]) if bad.size else n)
        allf = np.concatenate(eq)
        out[dtype] = {"per_codebook": [round(float(x), 4) for x in allf.mean(axis=0)],
                      "mean": round(float(allf.mean()), 4), "frames_before_first_difference": first,
                      "frames": frames}
    return out


def run(artifact_dir: Path, dtypes: str | list[str] = "all", device: str = "cpu", frames: int = 20,
        progress=print, cache_root: Path | None = None, end_to_end: bool = True) -> dict:
    from voxport.runtime.runtime import Runtime
    from voxport.validation import fidelity_report
    from voxport.validation.harness import onnx_providers, reference_family

    artifact_dir = Path(artifact_dir)
    manifest = mf.load(artifact_dir)
    dtypes = dt.parse(dtypes)
    t0 = time.time()
    # every variant's files hash-checked and loaded before the PyTorch reference (a damaged file or a
    # missing variant stops here with a specific error)
    runtimes = {d: Runtime(artifact_dir, providers=onnx_providers(device), dtype=d) for d in dtypes}
    for rt in runtimes.values():
        for name in manifest["graphs"]:
            rt.graphs.session(name)
    family, _ = reference_family(manifest, cache_root, device)
    rows = []
    for spec in family.graphs():
        if spec.name not in manifest["graphs"]:
            raise ArtifactError(f"{artifact_dir}: manifest lacks graph {spec.name!r} that the family declares")
        progress(f"fidelity: graph {spec.name} ({len(spec.check_sizes)} cases x {len(dtypes)} variants)")
        rows += score_graph(spec, {d: rt.graphs.session(spec.name) for d, rt in runtimes.items()},
                            family.precision_policy(spec.name), device)
    agree = {}
    if end_to_end:
        progress(f"fidelity: greedy codes vs fp32 over {len(PROMPTS)} prompts, {frames} frames")
        agree = agreement(runtimes, frames)
    summary = worst(rows)
    failures = [f"{r['graph']}.{r['output']} [{r['dtype']}]: {r['metric']} {r['value']:.4g} < {r['threshold']} "
                f"at {r['case']}" for r in summary if not r["ok"]]
    margins = [(r["value"] - r["threshold"], r) for r in summary if r["metric"] == "snr_db" and r["threshold"] is not None]
    w = min(margins, key=lambda x: x[0])[1] if margins else None
    result = {
        "artifact": str(artifact_dir), "device": device, "dtypes": dtypes, "seconds": round(time.time() - t0, 1),
        "ok": not failures, "failures": failures,
        "worst": f"{w['graph']}.{w['output']} [{w['dtype']}] {w['value']:.1f} dB (gate {w['threshold']})" if w else "-",
        "sizes": {d: mf.variant_bytes(manifest, d) for d in dtypes},
        "precision": {n: {d: g["variants"][d]["precision"] for d in dtypes} for n, g in manifest["graphs"].items()},
        "summary": summary, "rows": rows, "agreement": agree,
    }
    (artifact_dir / "fidelity.json").write_text(json.dumps(result, indent=2, default=_json))
    fidelity_report.write(artifact_dir, result)
    return result


def _json(x):
    return float(x) if isinstance(x, np.floating) else str(x)
