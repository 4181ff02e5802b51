"""Post-export pass: one fp32 ONNX graph -> its fp16 / q8 / q4 / q4f16 files, with onnxruntime's own tools.

- fp16:  onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True): graph inputs
         and outputs keep their declared dtypes (KV caches, noise, state stay fp32), weights and
         activations inside are fp16; nodes under `fp16_keep_fp32` module scopes stay fp32.
- q8:    quantize_dynamic (int8 weights, per-tensor activations quantized at run time) on MatMul
         (and Gather when the policy quantizes embeddings). A graph that runs several streams' rows in
         one call (policy `batched`: the frame graphs) gets quantize_q8_rows instead: activations
         quantized per row, so a row computes the same alone or in a batch.
- q4:    MatMulNBitsQuantizer, 4 bits, block Q4_BLOCK, symmetric; when the policy quantizes embeddings,
         Gather tables take q8's int8 form (Gather + DequantizeLinear), not GatherBlockQuantized:
         onnxruntime-web's wasm has no GatherBlockQuantized kernel, and a q4 variant that the
         page's wasm fallback cannot load is no edge variant. accuracy_level 4: where the kernel
         has it (onnxruntime's CPU MLAS with AVX2/AVX512-VNNI) activations are quantized to int8
         per block at run time and the product runs on int8 units, 1.6x faster per frame on
         marvis-250m than the fp32-compute default (bench/); wasm and WebGPU ignore the hint.
- q4f16: q4, then fp16 (MatMulNBits takes fp16 scales and activations).
A graph with nothing the pass changes (no float MatMul weight) reuses the fp32 file: no duplicate.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import load_external_data_for_model

from voxport.exporter.precision import GraphPrecision

ACCURACY_LEVEL = 4  # MatMulNBits: int8 compute where the CPU kernel supports it (see the docstring)
# Weights per 4-bit scale. Measured on marvis-250m's fused frame (2 threads, interleaved): block 32
# 82.8 ms/frame, 64 66.7, 128 55.6; depth logits SNR vs fp32 10.3 / 9.6 / 8.8 dB (gate 7.0).
Q4_BLOCK = 128
EXTERNAL_DATA_BYTES = 1 << 30  # over this, weights go to <file>.onnx_data (protobuf's 2 GB limit)


def save(model: onnx.ModelProto, path: Path) -> list[Path]:
    """Write `model` as path (+ path_data when large). Returns the files written."""
    path = Path(path)
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size > EXTERNAL_DATA_BYTES:
        data = path.with_name(path.name + "_data")  # model.onnx -> model.onnx_data
        if data.exists():
            data.unlink()
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
        return [path, data]
    onnx.save_model(model, str(path))
    return [path]


def make_variant(src: Path, dst: Path, dtype: str, policy: GraphPrecision) -> tuple[list[Path], dict]:
    """Write the `dtype` variant of the fp32 graph `src` to `dst`. Returns (files, precision), where
    precision says what the file holds: {"weights": ..., "activations": ..., "kept_fp32": [...]}."""
    if dtype in policy.unsupported:
        return [], {"dtype": "fp32", "reason": policy.unsupported[dtype]}
    # the graph alone: q4 reads each weight from the file as it packs it (orpheus-3b's fp32 frame holds
    # 12 GB); fp16 and q8 take the whole model
    model = onnx.load(str(src), load_external_data=False)
    if dtype not in ("q4", "q4f16"):
        load_external_data_for_model(model, str(src.parent))
    if dtype == "fp16":
        model, kept = to_fp16(model, policy)
        info = {"weights": "fp16", "activations": "fp16", "kept_fp32": kept}
    elif dtype == "q8" and policy.batched:
        model, n = quantize_q8_rows(model, policy)
        if policy.quantize_embeddings:
            model, tables = quantize_q8(model, policy, ops=["Gather"])
            n += tables
        info = {"weights": "int8 MatMul weights (a scale per column)"
                + ("; int8 Gather tables" if policy.quantize_embeddings else ""),
                "activations": "fp32 (quantized to int8 per row at run time: each row independent)", "quantized_nodes": n}
    elif dtype == "q8":
        model, n = quantize_q8(model, policy)
        info = {"weights": "int8 MatMul" + ("/Gather" if policy.quantize_embeddings else "") + " weights",
                "activations": "fp32 (quantized to uint8 at run time in MatMulInteger)", "quantized_nodes": n}
    elif dtype in ("q4", "q4f16"):
        model, n = quantize_q4(model, policy, src.parent)
        info = {"weights": f"int4 (block {Q4_BLOCK}, symmetric) MatMul weights"
                + ("; int8 Gather tables" if policy.quantize_embeddings else ""), "activations": "fp32",
                "quantized_nodes": n}
        if dtype == "q4f16" and n:
            model, kept = to_fp16(model, policy)
            info.update(activations="fp16", kept_fp32=kept)
    else:
        raise ValueError(dtype)
    if dtype != "fp16" and not info["quantized_nodes"]:
        return [], {"dtype": "fp32", "reason": "no MatMul/Gather with a constant float weight to quantize"}
    _toposort(model.graph)
    return save(model, dst), {"dtype": dtype, **info}


def _in_module(node, modules: tuple[str, ...]) -> bool:
    """Whether `node` is inside a module whose path contains one of `modules` as a whole component:
    the dynamo exporter's recorded scopes ("decoder_transformer" matches
    "codec.decoder.decoder_transformer"), or for written graphs the node name's scope
    ("sample" matches "/depth/step3/sample/TopK")."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            scopes = [f".{s}." for s in ast.literal_eval(p.value)]
            return any(f".{m}." in s for m in modules for s in scopes)
    return any(m in node.name.split("/")[:-1] for m in modules)


def to_fp16(model: onnx.ModelProto, policy: GraphPrecision) -> tuple[onnx.ModelProto, list[str]]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    block = [n.name for n in model.graph.node if policy.fp16_keep_fp32 and _in_module(n, policy.fp16_keep_fp32)]
    with _quiet():
        # disable_shape_infer: shape inference is slow on big graphs and not needed with keep_io_types
        out = convert_float_to_float16(model, keep_io_types=True, node_block_list=block, disable_shape_infer=True)
    _dedupe_casts(out.graph)
    _fp32_into_branches(out.graph)
    _toposort(out.graph)  # the converter appends the input casts last; the ONNX checker wants order
    return out, ([f"{m} ({len(block)} nodes)" for m in policy.fp16_keep_fp32] if block else [])


def _fp32_into_branches(graph) -> None:
    """The converter gives every kept-fp32 node's float output an fp16 twin under the original name
    (X_cast_to_fp16 -> Cast -> X) for its fp16 consumers, but an If branch that reads X from the
    outer scope (the frame graph's sampling) is typed fp32: point such reads at the fp32 original."""
    fp32_of = {n.output[0]: n.input[0] for n in graph.node
               if n.op_type == "Cast" and n.name == f"{n.output[0]}_cast_to_fp16_node"}
    for node in graph.node:
        for attr in node.attribute:
            for g in [attr.g] if attr.HasField("g") else []:
                for inner in g.node:
                    for i, name in enumerate(inner.input):
                        if name in fp32_of:
                            inner.input[i] = fp32_of[name]


def _dedupe_casts(graph) -> None:
    """With node_block_list the converter inserts one Cast per (tensor, blocked consumer), all named
    <tensor>_cast_to_fp32: the same Cast repeated, which breaks SSA. Keep the first of each."""
    seen, keep = {}, []
    for n in graph.node:
        key = tuple(n.output)
        if n.op_type == "Cast" and key in seen:
            first = seen[key]
            if list(first.input) != list(n.input) or first.attribute != n.attribute:
                raise RuntimeError(f"fp16 conversion wrote two different nodes producing {key}")
            continue
        seen[key] = n
        keep.append(n)
    graph.ClearField("node")
    graph.node.extend(keep)


def _needs(node) -> set[str]:
    """A node's inputs, plus what its subgraphs (If branches) read from the outer scope: the
    quantizers' own sorts ignore those and put an If before the values its branches read."""
    out = set(node.input)
    for attr in node.attribute:
        for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            made = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {t.name for t in g.initializer}
            out |= {i for n in g.node for i in _needs(n)} - made
    return out


def _toposort(graph) -> None:
    """Reorder nodes so each comes after the producers of what it reads (stable otherwise)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in _needs(n)):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or an outer-scope input: keep the remaining order
            ordered += rest
            break
        pending = rest
    graph.ClearField("node")
    graph.node.extend(ordered)


def _excluded(model, policy: GraphPrecision) -> list[str]:
    """Nodes the policy keeps unquantized: named in exclude_nodes_like, or outside quantize_only_in."""
    return [n.name for n in model.graph.node if any(s in n.name for s in policy.exclude_nodes_like)
            or (policy.quantize_only_in and n.op_type == "MatMul" and not _in_module(n, policy.quantize_only_in))]


def quantize_q8(model: onnx.ModelProto, policy: GraphPrecision, ops: list[str] | None = None
                ) -> tuple[onnx.ModelProto, int]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ops or ["MatMul"] + (["Gather"] if policy.quantize_embeddings else [])
    exclude = _excluded(model, policy)
    with tempfile.TemporaryDirectory(prefix="voxport-q8-") as tmp, _quiet():
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        # recorded shapes are re-inferred by the quantizer, except contrib-op outputs (no inference for
        # them): it rejected one of the traced Qwen3-TTS frame's own (48 vs 64, predictor vs talker
        # width) that onnx's checker accepts
        contrib = {o for n in model.graph.node if n.domain == "com.microsoft" for o in n.output}
        kept = [v for v in model.graph.value_info if v.name in contrib]
        del model.graph.value_info[:]
        model.graph.value_info.extend(kept)
        large = sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES
        onnx.save_model(model, str(src), save_as_external_data=large, location="in.onnx_data")
        del model
        # QInt8 weights: symmetric, what the CPU and WebGPU int8 kernels expect; per-tensor scales
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                         nodes_to_exclude=exclude, use_external_data_format=large,
                         # DefaultTensorType: ONNX shape inference has no types for contrib-op outputs
                         # (GroupQueryAttention in the written frame graph); every activation is float
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
        out = onnx.load(str(dst))
    n = sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "DequantizeLinear") for n in out.graph.node)
    return out, n


def quantize_q8_rows(model: onnx.ModelProto, policy: GraphPrecision) -> tuple[onnx.ModelProto, int]:
    """Every MatMul with a constant 2-D float weight (not excluded) as int8 with its activations quantized
    per row at run time: each row (token) of the input gets its own symmetric scale (max |x| / 127) and
    the weight a scale per output column. onnxruntime's dynamic quantization (DynamicQuantizeMatMul) takes
    one scale for the whole input, so a row's result depends on the other rows of the call: in a batch of
    streams that changes every stream's codes (marvis-250m: from the first batched frame). Here each row's
    integer product is exact and its scales are its own, so a row computes the same alone or in any batch.
    The row is stored as uint8 (value + 128, one zero point 128 for every row): the int8 CPU kernels'
    fast path is unsigned activations x signed weights. Returns (model, MatMulInteger nodes)."""
    from onnx import helper, numpy_helper

    graph, excluded = model.graph, set(_excluded(model, policy))
    inits = {t.name: t for t in graph.initializer}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))

    def const(name, value):
        if name not in inits:
            inits[name] = numpy_helper.from_array(value, name)
            graph.initializer.append(inits[name])
        return name

    c127 = const("q8rows/127", np.array(127, np.float32))
    c128 = const("q8rows/128", np.array(128, np.float32))
    tiny = const("q8rows/tiny", np.array(1e-30, np.float32))  # an all-zero row: scale tiny, codes 0
    zero = const("q8rows/zero_point", np.array(128, np.uint8))
    last = const("q8rows/last_axis", np.array([-1], np.int64))
    weights, rows, nodes, n = {}, {}, [], 0
    for node in graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if (w is None or node.name in excluded or len(w.dims) != 2 or w.data_type != onnx.TensorProto.FLOAT):
            nodes.append(node)
            continue
        scope = node.name.rsplit("/", 1)[0] if "/" in node.name else node.name
        if w.name not in weights:  # a weight read by several MatMuls (unrolled steps) is packed once
            f = numpy_helper.to_array(w).astype(np.float32)
            col = np.abs(f).max(axis=0) / 127
            q = np.round(f / np.where(col > 0, col, 1)).astype(np.int8)
            weights[w.name] = (const(f"{w.name}_int8", q), const(f"{w.name}_scale", col.astype(np.float32)))
        x = node.input[0]
        if x not in rows:  # one quantization per input, shared by the MatMuls that read it
            p = f"{scope}/quant_rows"
            out = [f"{p}/{k}" for k in ("abs", "max", "max_or_tiny", "scale", "scaled", "round", "shift", "codes")]
            axes = dict(axes=[-1]) if opset < 18 else {}
            nodes += [helper.make_node("Abs", [x], [out[0]], name=f"{p}/Abs"),
                      helper.make_node("ReduceMax", [out[0]] + ([last] if opset >= 18 else []), [out[1]],
                                       name=f"{p}/ReduceMax", keepdims=1, **axes),
                      helper.make_node("Max", [out[1], tiny], [out[2]], name=f"{p}/Max"),
                      helper.make_node("Div", [out[2], c127], [out[3]], name=f"{p}/Scale"),
                      helper.make_node("Div", [x, out[3]], [out[4]], name=f"{p}/Div"),
                      helper.make_node("Round", [out[4]], [out[5]], name=f"{p}/Round"),
                      helper.make_node("Add", [out[5], c128], [out[6]], name=f"{p}/Add"),
                      helper.make_node("Cast", [out[6]], [out[7]], name=f"{p}/Cast", to=onnx.TensorProto.UINT8)]
            rows[x] = (out[7], out[3])
        codes, scale = rows[x]
        qw, ws = weights[w.name]
        acc, fl, part = (f"{scope}/{k}_output_0" for k in ("MatMulInteger", "CastFloat", "MulRowScale"))
        nodes += [helper.make_node("MatMulInteger", [codes, qw, zero], [acc], name=f"{scope}/MatMulInteger"),
                  helper.make_node("Cast", [acc], [fl], name=f"{scope}/CastFloat", to=onnx.TensorProto.FLOAT),
                  helper.make_node("Mul", [fl, scale], [part], name=f"{scope}/MulRowScale"),
                  helper.make_node("Mul", [part, ws], [node.output[0]], name=f"{scope}/MulColumnScale")]
        n += 1
    graph.ClearField("node")
    graph.node.extend(nodes)
    used = {i for node in graph.node for i in _needs(node)}
    keep = [t for t in graph.initializer if t.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(keep)
    return model, n


def quantize_q4(model: onnx.ModelProto, policy: GraphPrecision, base_dir: Path | None = None
                ) -> tuple[onnx.ModelProto, int]:
    """`model` may keep its weights in external data under `base_dir` (not loaded): the quantizer then
    maps each MatMul weight from the file while it packs it, and only what stays float (embedding
    tables, rotary caches) is read in afterwards. Peak memory is the 4-bit model plus one weight."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    relative = _point_external_data_at(model, base_dir) if base_dir is not None else {}
    q = MatMulNBitsQuantizer(model, bits=4, block_size=Q4_BLOCK, is_symmetric=True, accuracy_level=ACCURACY_LEVEL,
                             op_types_to_quantize=("MatMul",), nodes_to_exclude=_excluded(model, policy))
    q.node_quantizer.quantize = _once_per_weight(q.node_quantizer.quantize)
    with _quiet():
        q.process()
    out = q.model.model
    if relative:
        _point_external_data_at(out, None, relative)
        load_external_data_for_model(out, str(base_dir))
    for node in out.graph.node:  # the quantizer names them <MatMul>_Q4: /.../qkv/MatMul_Q4 -> /.../qkv/MatMulNBits
        if node.op_type == "MatMulNBits" and node.name.endswith("/MatMul_Q4"):
            node.name = node.name[: -len("MatMul_Q4")] + "MatMulNBits"
    n = sum(n.op_type == "MatMulNBits" for n in out.graph.node)
    if policy.quantize_embeddings:  # int8 tables, runnable everywhere (see the module docstring)
        out, tables = quantize_q8(out, policy, ops=["Gather"])
        n += tables
    return out, n


def _once_per_weight(quantize):
    """The quantizer packs a weight once per MatMul that reads it: orpheus-3b's frame reads each layer's
    weights from its 7 unrolled steps, and packing 7 copies held 16.7 GB and took 482 s. Pack each once
    (per graph) and give the other MatMuls a MatMulNBits node on the same tables."""
    first: dict[tuple, onnx.NodeProto] = {}

    def once(node, graph_stack):
        key = (node.input[1], id(graph_stack[-1])) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if key in first:
            twin = onnx.NodeProto()
            twin.CopyFrom(first[key])
            twin.input[0], twin.output[0], twin.name = node.input[0], node.output[0], f"{node.name}_Q4"
            return [twin]
        nodes = quantize(node, graph_stack)
        if key is not None and len(nodes) == 1 and nodes[0].op_type == "MatMulNBits":
            first[key] = nodes[0]
        return nodes

    return once


def _point_external_data_at(model: onnx.ModelProto, base_dir: Path | None, back: dict | None = None) -> dict:
    """Make each external tensor's location absolute (under `base_dir`), since the quantizer reads
    tensors relative to the working directory; returns {absolute: relative}. With `back`, undo it."""
    changed = {}
    for t in model.graph.initializer:
        for entry in t.external_data if t.data_location == onnx.TensorProto.EXTERNAL else ():
            if entry.key == "location":
                new = back[entry.value] if back is not None else str(Path(base_dir).resolve() / entry.value)
                changed[new] = entry.value
                entry.value = new
    return changed


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantizers log per node at INFO/WARNING; keep the CLI output ours."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield
    finally:
        root.setLevel(level)
