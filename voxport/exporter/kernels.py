"""When onnxruntime's fused kernels take a transformer configuration: the rule the written graphs
(exporter/blocks.py) are built under; every other configuration gets its graph traced.

The rule is data, each entry with what was measured. Measured on onnxruntime 1.31.1's CPU kernels
with one-node graphs (`probe` below; tests/test_kernels.py runs it against the installed onnxruntime,
so a kernel that changes its mind fails a test, not an export):

- GroupQueryAttention, head sizes 2..256: 16, 32, 48, ..., 256 run; 8, 24, 40, 56, 72, 120, 136 fail
  at the first run with "head_size shall be a multiple of 16", with do_rotary 1 or 0, prefill or step
  (the session loads: only a run finds out); 2..12 not multiples of 8 fail with "head_size must be a
  multiple of 8". Heads / KV heads 6/4, 3/2, 4/8 fail with "num_heads must be a multiple of
  kv_num_heads"; 4/4, 4/1, 12/3 run.
- SkipSimplifiedLayerNormalization (the residual norms over the hidden width, and Qwen3's per-head
  q/k norms over the head size): widths 1, 3, 7, 8, 12, 100, 1000, 1001, 1536, 4097 all run. No rule.
- MatMul, Split, Sigmoid, Mul, Gather, TopK: standard ops, any shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class KernelRule:
    kernel: str
    requires: str  # what the configuration must satisfy, in words
    ok: Callable  # config -> bool
    measured: str  # what the kernel did outside it


RULES = (
    KernelRule("GroupQueryAttention", "head_dim a multiple of 16", lambda c: c.head_dim % 16 == 0,
               "head sizes 8, 24, 40, ... fail at the first run: 'head_size shall be a multiple of 16'"),
    KernelRule("GroupQueryAttention", "num_attention_heads a multiple of num_key_value_heads",
               lambda c: c.num_attention_heads % c.num_key_value_heads == 0,
               "6 heads over 4 KV heads fails: 'num_heads must be a multiple of kv_num_heads'"),
)
# what the written blocks compute, apart from the kernels
BLOCKS = (
    KernelRule("fused MLP", "hidden_act silu", lambda c: getattr(c, "hidden_act", "silu") == "silu",
               "the MLP is written SiLU-gated"),
    KernelRule("GroupQueryAttention", "no sliding window", lambda c: getattr(c, "sliding_window", None) is None,
               "the written attention attends to the whole past"),
)


def unfusable(cfg) -> str | None:
    """Why a Llama-style config cannot be written with the fused blocks (their first rule it breaks), or None."""
    for r in RULES + BLOCKS:
        if not r.ok(cfg):
            return f"{r.kernel} needs {r.requires} ({r.measured})"
    return None


def fusable(*configs) -> bool:
    return not any(unfusable(c) for c in configs)


def probe(head_dim: int, heads: int, kv_heads: int, seq: int = 1, past: int = 3) -> str | None:
    """Run one GroupQueryAttention node (rotary inside, a static [1, kv_heads, 8, head_dim] cache) on
    onnxruntime's CPU kernels: None if it runs, else the kernel's message."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from voxport.exporter.onnx_builder import IR_VERSION, MS_DOMAIN, OPSET

    cap, half = 8, max(head_dim // 2, 1)
    shapes = {"q": [1, seq, heads * head_dim], "k": [1, seq, kv_heads * head_dim], "v": [1, seq, kv_heads * head_dim],
              "past_k": [1, kv_heads, cap, head_dim], "past_v": [1, kv_heads, cap, head_dim], "cos": [16, half],
              "sin": [16, half]}
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes.items()]
    inputs += [helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
               helper.make_tensor_value_info("total", TensorProto.INT32, [])]
    node = helper.make_node("GroupQueryAttention", ["q", "k", "v", "past_k", "past_v", "seqlens_k", "total", "cos", "sin"],
                            ["out", "present_k", "present_v"], domain=MS_DOMAIN, num_heads=heads,
                            kv_num_heads=kv_heads, do_rotary=1, rotary_interleaved=0)
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in node.output]
    model = helper.make_model(helper.make_graph([node], "probe", inputs, outputs), ir_version=IR_VERSION,
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    feeds.update(seqlens_k=np.array([past + seq - 1], np.int32), total=np.array(past + seq, np.int32))
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feeds)
    except Exception as e:  # onnxruntime raises its own exception types
        text = str(e)
        return text[text.find("Status Message:") + 16:].strip() if "Status Message:" in text else text.splitlines()[0]
    return None
