"""The generic export driver: family spec -> one ONNX file per graph + manifest, written atomically."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import shutil
import time
import warnings
from pathlib import Path

from voxport import __version__
from voxport.errors import CheckpointError
from voxport.fsutil import atomic_dir
from voxport.manifest import FORMAT_VERSION, MANIFEST, file_entry
from exporter import checkpoint
from exporter.spec import Family, GraphSpec, family_for

EXTERNAL_DATA_BYTES = 1 << 30  # above this, weights go to <graph>.onnx_data (protobuf's 2 GB limit)


def export(model: str, out: Path, device: str = "cpu", progress=print, cache_root: Path | None = None) -> Path:
    t0 = time.time()
    ckpt = checkpoint.resolve(model, cache_root)
    progress(f"loading {ckpt.path}")
    ref, tokenizer = checkpoint.load(ckpt, device)
    fam_cls = family_for(ref.config)
    if fam_cls is None:
        raise CheckpointError(f"{ckpt.path}: no voxport family handles model_type {ref.config.model_type!r}")
    out = Path(out)
    with atomic_dir(out) as tmp:
        tok_files = _copy_tokenizer(ckpt.path, tmp, tokenizer)
        family: Family = fam_cls(ref, tok_files)
        (tmp / "onnx").mkdir()
        graphs = {}
        specs = family.graphs()
        for i, spec in enumerate(specs, 1):
            t = time.time()
            progress(f"[{i}/{len(specs)}] exporting {spec.name} ...")
            files = export_graph(spec, tmp, device)
            graphs[spec.name] = {
                "files": [file_entry(tmp, f) for f in files],
                "inputs": [s.as_json() for s in spec.inputs],
                "outputs": [s.as_json() for s in spec.outputs],
            }
            progress(f"[{i}/{len(specs)}] {spec.name}: {sum(g['bytes'] for g in graphs[spec.name]['files']) / 1e6:.1f} MB "
                     f"in {time.time() - t:.1f} s")
        manifest = {
            "format_version": FORMAT_VERSION,
            "toolchain": {"voxport": __version__, **_versions()},
            "source": {**ckpt.source, "model_type": ref.config.model_type,
                       "parameters": sum(p.numel() for p in ref.parameters())},
            "family": family.name,
            "runtime": family.runtime_config(),
            "files": [file_entry(tmp, f) for f in tok_files.values()],
            "graphs": graphs,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    progress(f"wrote {out} in {time.time() - t0:.1f} s")
    return out


def _copy_tokenizer(src: Path, dst: Path, tokenizer) -> dict[str, str]:
    shutil.copy(src / checkpoint.TOKENIZER_FILE, dst / checkpoint.TOKENIZER_FILE)
    (dst / checkpoint.TEMPLATE_FILE).write_text(checkpoint.chat_template(src))
    # bos/eos strings are template variables; store them beside the template for torch-free runtimes
    special = {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token}
    (dst / "special_tokens.json").write_text(json.dumps(special, indent=2))
    return {"tokenizer_file": checkpoint.TOKENIZER_FILE, "chat_template_file": checkpoint.TEMPLATE_FILE,
            "special_tokens_file": "special_tokens.json"}


def export_graph(spec: GraphSpec, root: Path, device: str = "cpu") -> list[str]:
    """Trace `spec.module` with torch.export (named dynamic dims) and write onnx/<name>.onnx."""
    import onnx
    import torch

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
    external = n_bytes > EXTERNAL_DATA_BYTES
    path = root / rel
    program.save(str(path), external_data=external)
    del program
    model = onnx.load(str(path), load_external_data=False)
    _name_axes(model, spec)
    onnx.save(model, str(path))
    files = [rel]
    if external:
        files += sorted(f"onnx/{p.name}" for p in path.parent.glob(f"{path.name}*data"))
    return files


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
