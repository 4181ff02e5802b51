"""ONNX Runtime sessions for the graphs listed in a manifest, checked against it before loading."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from voxport import manifest as mf
from voxport.errors import ArtifactError


class Graphs:
    """Lazily created sessions of one precision variant (`dtype`: fp32, fp16, q8, q4, q4f16); a
    graph's files are hash-checked once, before its first load. Sessions may be shared by threads
    (onnxruntime's run is thread-safe); creating one is serialised so a graph is loaded once."""

    def __init__(self, artifact_dir: Path, providers: list[str] | None = None, threads: int = 0,
                 dtype: str = "fp32", profile_dir: Path | None = None):
        self.dir = Path(artifact_dir)
        self.manifest = mf.load(self.dir)
        self.dtype = dtype
        for name in self.manifest["graphs"]:  # unknown or absent dtype: a specific error now, not mid-speech
            mf.variant(self.manifest, name, dtype, self.dir)
        self.rt = self.manifest["runtime"]
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        # graph name -> its own intra-op threads (0: all cores), set before the graph loads (Runtime's codec_threads)
        self.graph_threads: dict[str, int] = {}
        self.profile_dir = profile_dir  # benchmarks: onnxruntime's per-node profile of every session
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._checked: set[str] = set()  # graphs whose files passed the hash check (released ones too)
        self._lock = threading.Lock()
        mf.check_files(self.dir, self.manifest, graphs=[])  # tokenizer and template files

    def session(self, name: str) -> ort.InferenceSession:
        if name in self._sessions:
            return self._sessions[name]
        with self._lock:
            return self._session(name)

    def _session(self, name: str) -> ort.InferenceSession:
        if name not in self._sessions:
            path = mf.graph_path(self.dir, self.manifest, name, self.dtype)
            self.check([name])
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            threads = self.graph_threads.get(name, self.threads)
            if threads:
                opts.intra_op_num_threads = threads
            # Each session has its own thread pool, and a pool's threads spin after their work by
            # default: while the codec runs, the frame session's threads still hold the cores. On 2
            # cores, marvis-250m q4 with the codec between frames: 95 ms/frame spinning, 55 without.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if self.profile_dir:
                opts.enable_profiling = True
                opts.profile_file_prefix = str(Path(self.profile_dir) / name)
            try:
                self._sessions[name] = ort.InferenceSession(str(path), opts, providers=self.providers)
            except Exception as e:
                raise ArtifactError(f"{path}: onnxruntime could not load it ({str(e).splitlines()[0][:200]})") from None
        return self._sessions[name]

    def check(self, names: list[str]) -> None:
        """Hash-check these graphs' files now (each once: a released session reloads unchecked)."""
        todo = [n for n in names if n not in self._checked]
        if todo:
            mf.check_files(self.dir, self.manifest, graphs=todo, dtype=self.dtype)
            self._checked.update(todo)

    def release(self, name: str) -> None:
        """Drop a graph's session (its memory goes with the last reference); a later call loads it again."""
        with self._lock:
            self._sessions.pop(name, None)

    def run(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session(name).run(None, feeds)
