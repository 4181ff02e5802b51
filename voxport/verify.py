"""`voxport verify DIR`: the artifact set against its manifest, every variant of every graph.

Checks, in order (a file that fails one is not taken further, so a damaged file is never loaded):
files present, sizes, sha256; the ONNX checker; onnxruntime loads it; its inputs and outputs are the
declared ones (names, order, element types, symbolic axes). Torch-free.
"""

from __future__ import annotations

from pathlib import Path

from voxport import dtypes as dt
from voxport import manifest as mf

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
             "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def verify(artifact_dir: Path, dtypes: list[str] | None = None, load: bool = True) -> list[str]:
    """Everything wrong with DIR, one line each (empty: the set is sound). `dtypes` limits the check
    to some variants; raises only when there is no readable manifest (ArtifactError)."""
    root = Path(artifact_dir)
    m = mf.load(root)
    problems = mf.file_problems(root, m.get("files", []))
    declared = m.get("dtypes", [])
    for d in declared:
        if d not in dt.SUFFIX:
            problems.append(f"{mf.MANIFEST}: unknown dtype {d!r} in dtypes")
    wanted = [dt.check(d) for d in dtypes] if dtypes else [d for d in declared if d in dt.SUFFIX]
    checked: set[str] = set()
    for name, g in m.get("graphs", {}).items():
        for d in wanted:
            v = g.get("variants", {}).get(d)
            if v is None:
                problems.append(f"{name} [{d}]: no such variant in {mf.MANIFEST} "
                                f"(has {', '.join(g.get('variants', {})) or 'none'})")
                continue
            bad = mf.file_problems(root, v["files"])
            problems += [f"{name} [{d}]: {p}" for p in bad]
            path = v["files"][0]["path"]
            if bad or path in checked:
                continue
            checked.add(path)
            problems += [f"{name} [{d}]: {path}: {p}" for p in _check_graph(root / path, g, load)]
    return problems


def _check_graph(path: Path, g: dict, load: bool) -> list[str]:
    import onnx

    try:
        onnx.checker.check_model(str(path))  # a path, not a proto: works for external data and > 2 GB
    except Exception as e:  # noqa: BLE001 - the checker raises several types; all mean "invalid"
        return [f"ONNX checker: {_first_line(e)}"]
    if not load:
        return []
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        return [f"onnxruntime could not load it: {_first_line(e)}"]
    problems = []
    for kind, real, decl in (("input", sess.get_inputs(), g["inputs"]), ("output", sess.get_outputs(), g["outputs"])):
        names = [r.name for r in real]
        if names != [s["name"] for s in decl]:
            problems.append(f"{kind}s {names} differ from the manifest's {[s['name'] for s in decl]}")
            continue
        for r, s in zip(real, decl):
            if ORT_TYPES.get(r.type, r.type) != s["dtype"] or list(r.shape) != s["shape"]:
                problems.append(f"{kind} {r.name}: file has {ORT_TYPES.get(r.type, r.type)} {list(r.shape)}, "
                                f"manifest says {s['dtype']} {s['shape']}")
    return problems


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
