"""Precision variant names and their transformers.js file suffixes. Torch-free (runtime, verify, web)."""

from __future__ import annotations

from voxport.errors import DtypeError

# transformers.js: model.onnx, model_fp16.onnx, model_quantized.onnx (q8), model_q4.onnx, model_q4f16.onnx
SUFFIX = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "q4": "_q4", "q4f16": "_q4f16"}
DTYPES = tuple(SUFFIX)


def check(dtype: str) -> str:
    if dtype not in SUFFIX:
        raise DtypeError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return dtype


def parse(text: str | list[str] | None) -> list[str]:
    """'fp16,q4' -> ['fp32', 'fp16', 'q4'] (None or 'all': every dtype). fp32 is always included and
    first: it is the source the other variants are made from and the reference they are measured by."""
    if text is None or text == "all":
        return list(DTYPES)
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not names:
        raise DtypeError(f"no dtype named in {text!r}; known: {', '.join(DTYPES)}")
    for n in names:
        check(n)
    return ["fp32"] + [d for d in DTYPES if d in names and d != "fp32"]


def file_stem(graph: str, dtype: str) -> str:
    return f"{graph}{SUFFIX[check(dtype)]}"
