"""What a model family declares: its graphs as data (wrapper, tensors with named axes, cases, tolerances).

The export driver, the manifest writer and the parity harness read only these declarations, so a new
family (Qwen3-TTS, Orpheus) is one module under voxport/exporter/families/ and nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Callable

from voxport.exporter.precision import GraphPrecision


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64"
    shape: tuple  # ints for fixed axes, strings for named dynamic axes

    def as_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Tolerance:
    """max |onnx - torch| <= atol + rtol * max|torch| per output (the output's own scale).

    fp32 default 2e-5: measured worst 1.8e-6 (marvis-250m backbone), 4e-7 (tiny); 10x margin, and
    5x tighter than the 1e-4 the project asks of fp32."""

    rtol: float = 2e-5
    atol: float = 1e-6
    exact: bool = False  # integer outputs (codes) must match exactly


@dataclass
class GraphSpec:
    name: str
    module: Any  # torch.nn.Module wrapper whose forward takes the inputs positionally
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    make_inputs: Callable[[dict], list]  # sizes -> torch tensors, in input order
    export_sizes: dict  # sizes used for tracing (every dynamic size >= 2)
    check_sizes: list[dict]  # parity cases: differ from export_sizes so baked constants are caught
    tolerance: dict[str, Tolerance] = field(default_factory=dict)  # per output; default Tolerance()
    # export-only patches of the reference model, restored on exit (None: export it as it is)
    export_context: Callable[[], AbstractContextManager] | None = None
    # onnxscript's rewriter is quadratic on big unrolled graphs; such a graph skips it (constants are
    # folded instead) and is left to onnxruntime's own graph optimizations at load. Every traced frame
    # graph does: tiny-hd24's (31 depth steps) had spent 9 min of CPU in the rewriter, unfinished,
    # where its whole frame export without it takes 2 min.
    optimize: bool = True
    # a graph written from the weights instead of traced (voxport/exporter/blocks.py: fused onnxruntime ops):
    # build(inputs, outputs) -> onnx.ModelProto with exactly the declared I/O. `module` then stays the
    # PyTorch reference the parity harness compares the written graph against.
    build: Callable[[list, list], Any] | None = None
    # outputs written in place into an input's buffer (a static KV cache: present -> past). A runtime
    # binds one buffer as both; the parity harness and the export smoke run do the same, since an
    # output's positions the graph does not write are undefined when the buffers are apart.
    inplace: dict[str, str] = field(default_factory=dict)
    # for those outputs: feeds -> each row's written positions along axis 2 (a static cache's rows
    # hold lengths + seq); past them a buffer holds whatever it held, or, where the graph cannot
    # write in place (fp16 variants: a Cast between buffer and attention), anything. Compared
    # only up to there.
    valid_positions: Callable[[dict], Any] | None = None

    def exporting(self) -> AbstractContextManager:
        return self.export_context() if self.export_context else nullcontext()

    def tolerance_for(self, output: str) -> Tolerance:
        return self.tolerance.get(output, Tolerance())


@dataclass
class ParityRow:
    """One end-to-end parity case of a family, as the CLI and the report print it without knowing it:
    `summary` is the phrase after the name ("identical over 50 frames"), `details` the numbers (kept in
    parity.json; a list under "agreement_per_frame" or "max_abs_per_frame" is plotted)."""

    name: str
    ok: bool
    summary: str
    details: dict = field(default_factory=dict)
    failure: str = ""  # the failure line when not ok (defaults to "name: summary")

    def as_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "summary": self.summary,
                "failure": "" if self.ok else (self.failure or f"{self.name}: {self.summary}")}


class Family:
    """A model family, the one place that knows a model: which checkpoints it claims, how to load and
    build them, its presets, its graphs, its parity cases, and the generation contract it writes into
    the manifest for the runtimes."""

    name: str = ""
    model_types: tuple[str, ...] = ()  # config.json "model_type" values this family exports
    # built-in random-weight models: name -> a preset object (a dataclass with `seed`); build_preset
    # writes one as a checkpoint directory in the family's released layout
    presets: dict = {}
    # per graph: how its fp16/q8/q4/q4f16 variants are made (exporter/precision.py); a graph not
    # listed gets GraphPrecision(): MatMul weights quantized, everything else as exported
    precision: dict[str, GraphPrecision] = {}
    # whether llama.cpp's llama-tts runs this family's checkpoints once its convert_hf_to_gguf.py has
    # converted them (`voxport bench` measures it beside voxport; llama_tts_refusal says which ones)
    llama_tts: bool = False

    @classmethod
    def claims(cls, config: dict) -> bool:
        """Whether this family exports the checkpoint whose config.json this is (default: its model_type)."""
        return config.get("model_type") in cls.model_types

    @classmethod
    def build_preset(cls, preset, out: Path) -> None:
        raise NotImplementedError

    @classmethod
    def check_dir(cls, path: Path, config: dict) -> None:
        """Cheap structural checks beyond config.json and the weights (tokenizer files, sub-models):
        raise CheckpointError naming what is missing and where."""

    @classmethod
    def llama_tts_refusal(cls, path: Path, config: dict) -> str | None:
        """Why llama.cpp's converter or llama-tts cannot take this checkpoint (None: they can), for a
        family with `llama_tts`."""
        return None

    @classmethod
    def load(cls, path: Path, device: str = "cpu"):
        """The reference model (fp32, eval) of a checked checkpoint directory."""
        raise NotImplementedError

    def __init__(self, model, source: Path | None = None):
        self.model = model
        self.source = source  # the checkpoint directory (tokenizer files are copied from it)

    def graphs(self) -> list[GraphSpec]:
        raise NotImplementedError

    def precision_policy(self, graph: str) -> GraphPrecision:
        return self.precision.get(twin_of(graph), GraphPrecision())

    def artifact_files(self, out: Path) -> dict[str, str]:
        """Write the non-graph files a runtime needs (tokenizer, template) into `out`:
        {manifest runtime key: file name}."""
        return {}

    def runtime_config(self) -> dict:
        """Everything a runtime needs besides the graphs (ids, sizes, the generation contract),
        stored in the manifest."""
        raise NotImplementedError

    def reference_generate(self, text: str, frames: int, device: str) -> tuple:
        """The benchmark's reference: the family's own PyTorch generate, greedy, on `text` for `frames`
        frames: (codes [frames, K], wall time of each frame, decode(codes) -> waveform)."""
        raise NotImplementedError

    def parity(self, rt, ckpt, frames: int, device: str, progress) -> list[ParityRow]:
        """The family's end-to-end parity cases against its reference implementation, one row each.
        A family that splits its cases into parity_reference and parity_compare gets this from them."""
        if self.splits_parity():
            return self.parity_compare(rt, self.parity_reference(rt, ckpt, frames, device, progress), frames, progress)
        return []

    @classmethod
    def splits_parity(cls) -> bool:
        """Whether the end-to-end cases come in two phases: `voxport parity` then releases the PyTorch
        reference before it loads any onnxruntime session, so a model whose fp32 reference and fp32
        sessions do not fit in memory together is still checked."""
        return cls.parity_reference is not Family.parity_reference

    def parity_reference(self, rt, ckpt, frames: int, device: str, progress) -> dict:
        """The PyTorch side of the end-to-end cases, run before any session is loaded (`rt` gives the
        contract and prompts only): everything parity_compare needs, holding no large module."""
        raise NotImplementedError

    @classmethod
    def parity_compare(cls, rt, reference: dict, frames: int, progress) -> list[ParityRow]:
        """The onnxruntime side of the end-to-end cases against `reference`, one row each; the family's
        reference model is gone by then."""
        raise NotImplementedError


_REGISTERED: list[type[Family]] = []


def register(cls: type[Family]) -> type[Family]:
    """Class decorator a family module applies to its Family (after llama.cpp's ModelBase.register).
    The lookup over registered families lives above them, in voxport/exporter/families/__init__.py."""
    _REGISTERED.append(cls)
    return cls


def registered() -> list[type[Family]]:
    return list(_REGISTERED)


CAPTURE = "{graph}_capture"


def capture_twin(spec: GraphSpec, build: Callable[[list, list], Any]) -> GraphSpec:
    """A frame graph's twin in the form WebGPU graph capture takes (blocks.Sampler's and cache_lengths'
    capturable forms: no `If`, nothing the GPU reads computed on the CPU): the same inputs, outputs,
    PyTorch reference and parity cases, written by `build`. Only WebGPU loads it (the manifest's
    frame contract names it as `capture`); where its fp32 weights are the frame's, its data file is."""
    return replace(spec, name=CAPTURE.format(graph=spec.name), build=build, optimize=False)


def twin_of(graph: str) -> str:
    """The graph a capture twin was made from (its precision policy), else the graph itself."""
    suffix = CAPTURE.format(graph="")
    return graph[:-len(suffix)] if graph.endswith(suffix) else graph


def capture_entry(twins: list[GraphSpec]) -> dict:
    """The frame contract's `capture` key: the capture twin's graph name, where there is one."""
    return {"capture": twins[0].name} if twins else {}
