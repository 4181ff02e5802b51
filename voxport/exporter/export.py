"""The generic export driver: family spec -> one ONNX file per graph + manifest, written atomically."""

from __future__ import annotations

import contextlib
import gc
import inspect
import io
import json
import logging
import time
import warnings
from pathlib import Path

from voxport import __version__
from voxport.fsutil import atomic_dir, check_dir_target
from voxport import dtypes as dt
from voxport.manifest import FORMAT_VERSION, MANIFEST, file_entry, is_artifact_dir, variant_bytes
from voxport.exporter import checkpoint
from voxport.exporter.onnx_builder import ExternalData
from voxport.exporter.quantize import EXTERNAL_DATA_BYTES
from voxport.exporter.spec import Family, GraphSpec



def check_output(out: Path) -> None:
    """Refuse, in one line, an output that is a file or a directory voxport did not write (its
    contents would be replaced), or a place that takes no new directory: before the checkpoint loads."""
    check_dir_target(Path(out), is_artifact_dir, "-o/--output")


def export(model: str, out: Path, device: str = "cpu", progress=print, cache_root: Path | None = None,
           dtypes: str | list[str] | None = None, parts: dict[str, str | None] | None = None) -> Path:
    """Export every graph of the model's family in fp32, then make each requested precision variant
    (default: all of voxport.dtypes.DTYPES) from the fp32 files, after the PyTorch model is freed.
    `parts`: {"tokenizer": DIR|HUB_ID, "codec": DIR|HUB_ID} a checkpoint ships without."""
    t0 = time.time()
    dtypes = dt.parse(dtypes)  # an unknown name fails here, before minutes of export
    check_output(Path(out))
    ckpt = checkpoint.resolve(model, cache_root, parts)
    progress(f"loading {ckpt.path}")
    ref, fam_cls = checkpoint.load(ckpt, device)
    out = Path(out)
    with atomic_dir(out, is_artifact_dir, "-o/--output") as tmp:
        family: Family = fam_cls(ref, ckpt.path)
        tok_files = family.artifact_files(tmp)
        (tmp / "onnx").mkdir()
        graphs, policies, smoke = {}, {}, {}
        specs = family.graphs()
        spilled = ExternalData(EXTERNAL_DATA_BYTES)  # written graphs share the weights they have in common
        for i, spec in enumerate(specs, 1):
            t = time.time()
            progress(f"[{i}/{len(specs)}] exporting {spec.name} ...")
            files = export_graph(spec, tmp, device, spilled)
            entries = [file_entry(tmp, f) for f in files]
            graphs[spec.name] = {
                "inputs": [s.as_json() for s in spec.inputs],
                "outputs": [s.as_json() for s in spec.outputs],
                "variants": {"fp32": {"files": entries, "precision": {"dtype": "fp32"}}},
            }
            policies[spec.name] = family.precision_policy(spec.name)
            smoke[spec.name] = smallest_feeds(spec)
            progress(f"[{i}/{len(specs)}] {spec.name}: {sum(e['bytes'] for e in entries) / 1e6:.1f} MB "
                     f"in {time.time() - t:.1f} s")
        source = {**ckpt.source, "model_type": ref.config.model_type,
                  "parameters": sum(p.numel() for p in ref.parameters())}
        runtime, family_name = {**family.runtime_config(), **tok_files}, family.name
        # quantization works on the files alone: free the PyTorch model first (csm-1b: 6 GB)
        del specs, family, ref, spec
        gc.collect()
        _make_variants(tmp, graphs, policies, dtypes[1:], progress)
        smoke_run(tmp, graphs, smoke, progress)
        manifest = {
            "format_version": FORMAT_VERSION,
            "toolchain": {"voxport": __version__, **_versions()},
            "source": source,
            "family": family_name,
            "runtime": runtime,
            "files": [file_entry(tmp, f) for f in tok_files.values()],
            "dtypes": dtypes,
            "graphs": graphs,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    progress(f"wrote {out} in {time.time() - t0:.1f} s")
    return out


def smallest_feeds(spec: GraphSpec) -> dict:
    """The spec's check case with the fewest input elements, as numpy feeds (made while the model
    is still loaded: the makers read it)."""
    cases = [[a.numpy() for a in spec.make_inputs(c)] for c in spec.check_sizes]
    args = min(cases, key=lambda arrays: sum(a.size for a in arrays))
    return {s.name: a for s, a in zip(spec.inputs, args)}


def smoke_run(root: Path, graphs: dict, feeds: dict, progress) -> None:
    """Run every variant of every graph once on its smallest check case before the manifest is
    written: a graph onnxruntime loads but refuses to run (a kernel that does not take the
    configuration: GroupQueryAttention's head size, exporter/kernels.py) fails the export with one
    line here, not a runtime or the page later."""
    import onnxruntime as ort

    from voxport.errors import ExportError

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    ran = set()
    for name, entry in graphs.items():
        for dtype, variant in entry["variants"].items():
            path = root / variant["files"][0]["path"]
            if path in ran:  # a variant that reuses the fp32 file
                continue
            ran.add(path)
            try:
                ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feeds[name])
            except Exception as e:  # onnxruntime raises its own exception types
                text = str(e)
                why = text[text.find("Status Message:") + 16:] if "Status Message:" in text else text
                raise ExportError(f"graph {name} ({dtype}) does not run in onnxruntime {ort.__version__}: "
                                  f"{why.strip().splitlines()[0][:300]}") from None
    progress(f"ran every graph once ({len(graphs)} graphs, smallest check case)")


def _make_variants(root: Path, graphs: dict, policies: dict, dtypes: list[str], progress) -> None:
    """Each graph's fp16/q8/q4/q4f16 files from its fp32 file, named with the transformers.js suffixes.
    A graph that cannot take a dtype (its policy says why), or has nothing to quantize, reuses its fp32
    files in that variant; the manifest records the precision actually used and the reason."""
    from voxport.exporter.quantize import make_variant

    for dtype in dtypes:
        t = time.time()
        for name, g in graphs.items():
            fp32 = g["variants"]["fp32"]
            src = root / fp32["files"][0]["path"]
            files, precision = make_variant(src, src.with_name(dt.file_stem(name, dtype) + ".onnx"),
                                            dtype, policies[name])
            entries = [file_entry(root, str(f.relative_to(root))) for f in files] or fp32["files"]
            g["variants"][dtype] = {"files": entries, "precision": precision}
        progress(f"[{dtype}] {variant_bytes({'graphs': graphs}, dtype) / 1e6:.1f} MB in {time.time() - t:.1f} s")


def export_graph(spec: GraphSpec, root: Path, device: str = "cpu", spilled: ExternalData | None = None) -> list[str]:
    """Trace `spec.module` with torch.export (named dynamic dims), or write the graph `spec.build`
    makes from the weights, to onnx/<name>.onnx (large initializers to the export's `spilled`)."""
    import onnx
    import torch

    if spec.build is not None:
        return _write_built(spec, root, spilled or ExternalData(EXTERNAL_DATA_BYTES))
    args = [a.to(device) for a in spec.make_inputs(spec.export_sizes)]
    rel = f"onnx/{spec.name}.onnx"
    n_bytes = sum(p.numel() * p.element_size() for p in spec.module.parameters())
    with torch.no_grad(), warnings.catch_warnings(), _quiet_torch_onnx(), spec.exporting():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            spec.module, tuple(args), dynamo=True, verbose=False,
            input_names=[s.name for s in spec.inputs], output_names=[s.name for s in spec.outputs],
            dynamic_shapes=_dynamic_shapes(spec), optimize=spec.optimize,
        )
    if not spec.optimize:
        _fold_constants(program.model)
    external = n_bytes > EXTERNAL_DATA_BYTES
    path = root / rel
    program.save(str(path), external_data=external)
    del program
    model = onnx.load(str(path), load_external_data=False)
    _name_axes(model, spec)
    files = [rel]
    if external:
        files.append(_rename_external_data(model, path))
    onnx.save(model, str(path))
    return files


def _write_built(spec: GraphSpec, root: Path, spilled: ExternalData) -> list[str]:
    """The graph written from the weights. Past EXTERNAL_DATA_BYTES of initializers the builder streams
    them to <graph>.onnx_data as it makes them, or points at an earlier graph's file where that holds
    the same weight (exporter/onnx_builder.py): the weights are never held twice (orpheus-3b's 12 GB
    fp32 frame would otherwise peak near 25 GB beside the PyTorch model), and its lm_step adds 0.1 GB
    of disk, not 12."""
    import torch

    from voxport.exporter.quantize import save

    path = root / f"onnx/{spec.name}.onnx"
    with torch.no_grad(), spilled.graph(path.with_name(path.name + "_data")):
        model = spec.build(spec.inputs, spec.outputs)
    _name_axes(model, spec)
    files = save(model, path) + [f for f in spilled.used if f != path]
    return [str(f.relative_to(root)) for f in files]


def _rename_external_data(model, path: Path) -> str:
    """torch writes <graph>.onnx.data; transformers.js and optimum expect <graph>.onnx_data. Rename the
    file and the location recorded in each tensor (no weight is loaded)."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    new = path.with_name(path.name + "_data")
    olds = set()
    for t in _get_all_tensors(model):
        if uses_external_data(t):
            for kv in t.external_data:
                if kv.key == "location":
                    olds.add(kv.value)
                    kv.value = new.name
    if len(olds) != 1:
        raise RuntimeError(f"{path}: expected one external data file, the exporter wrote {sorted(olds)}")
    (path.parent / olds.pop()).rename(new)
    return f"onnx/{new.name}"


def _fold_constants(model) -> None:
    """The cheap parts of the optimizer for graphs that skip it. Common subexpressions first: each of
    the 31 unrolled depth steps of a traced frame graph has its own Transpose of the same Linear
    weight, and folding those one by one wrote 31 copies (marvis-250m: 9.5 GB instead of 2). Then
    fold constant subgraphs, so MatMuls take initializers (the quantizers need that)."""
    from onnx_ir.passes.common import CommonSubexpressionEliminationPass
    from onnxscript.optimizer import _constant_folding, remove_unused_nodes

    CommonSubexpressionEliminationPass()(model)
    _constant_folding.fold_constants(model, input_size_limit=1 << 40, output_size_limit=1 << 40)
    remove_unused_nodes(model)


def _dynamic_shapes(spec: GraphSpec):
    """torch.export Dims from the spec's named axes. Axes whose size is a relation of others
    (past + seq) are left DYNAMIC for the exporter to infer; their names are set afterwards."""
    from torch.export import Dim

    dims: dict[str, object] = {}

    def dim(name):
        if name not in dims:
            dims[name] = Dim(name, min=0) if name == "past" else Dim(name)
        return dims[name]

    derived = {"past_seq"}
    per_input = [{ax: (Dim.DYNAMIC if n in derived else dim(n)) for ax, n in enumerate(s.shape) if isinstance(n, str)}
                 for s in spec.inputs]
    params = inspect.signature(spec.module.forward).parameters.values()
    n_fixed = sum(p.kind == p.POSITIONAL_OR_KEYWORD for p in params)
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return (*per_input[:n_fixed], tuple(per_input[n_fixed:]))
    return tuple(per_input)


def _name_axes(model, spec: GraphSpec) -> None:
    """Give graph inputs/outputs the spec's axis names (the exporter invents names like s53)."""
    by_name = {s.name: s for s in spec.inputs + spec.outputs}
    for vi in list(model.graph.input) + list(model.graph.output):
        s = by_name.get(vi.name)
        if s is None:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(s.shape):
            raise RuntimeError(f"{spec.name}.{vi.name}: exported rank {len(dims)} != declared {len(s.shape)}")
        for d, want in zip(dims, s.shape):
            if isinstance(want, str):
                d.dim_param = want
            elif d.HasField("dim_value") and d.dim_value != want:
                raise RuntimeError(f"{spec.name}.{vi.name}: exported axis {d.dim_value} != declared {want}")


@contextlib.contextmanager
def _quiet_torch_onnx():
    """torch.onnx prints progress lines and warnings per graph; keep the CLI output ours."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _versions() -> dict:
    import onnx
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__}
