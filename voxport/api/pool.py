"""What the server holds: the served artifact directories and, per (artifact, precision), one loaded
runtime shared by all requests and the engine that batches their frames (runtime/engine.py: one
thread stepping every active stream, one slot per admitted stream). How many generate at once is
voxport/api/slots.py."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from voxport.runtime import open_runtime
from voxport.runtime.engine import Engine
from voxport import manifest as mf
from voxport.api.errors import ApiError
from voxport.errors import VoxportError

log = logging.getLogger("voxport.serve")


class Models:
    def __init__(self, dirs: dict[str, Path], dtype: str = "fp32", threads: int = 0, streams: int = 4,
                 batching: bool = True, context: int | None = None, batch_codec: bool = True,
                 codec_threads: int | None = None):
        self.dirs, self.dtype, self.threads, self.context = dirs, dtype, threads, context
        self.streams, self.batching = streams, batching  # batching False: each stream its own batch-1 loop
        self.batch_codec = batch_codec  # with batching: the codec calls too (the engine's codec thread)
        self.codec_threads = codec_threads  # the streaming codec's session (None: `threads`)
        self._runtimes: dict[tuple[str, str], object] = {}
        self._engines: dict[tuple[str, str], Engine] = {}
        self._manifests: dict[str, dict | None] = {}
        self._lock = threading.Lock()
        self.load_s: dict[str, float] = {}  # "name:dtype" -> seconds to load its sessions

    def manifest(self, name: str) -> dict | None:
        """The manifest of a served directory; None when it is not one this voxport can speak from
        (the page may still serve it). Read once: every request resolves its model through it."""
        if name not in self._manifests:
            try:
                self._manifests[name] = mf.load(self.dirs[name])
            except VoxportError:
                self._manifests[name] = None
        return self._manifests[name]

    def resolve(self, model: str, param: str = "model") -> tuple[str, str]:
        """"NAME" or "NAME:DTYPE" -> (served name, precision); 404 / 400 with what exists."""
        if not isinstance(model, str) or not model:
            raise ApiError(400, "model is required: one of " + ", ".join(self.dirs), param)
        name, _, dtype = model.partition(":")
        manifest = self.manifest(name) if name in self.dirs else None
        if manifest is None:
            raise ApiError(404, f"model {model!r} does not exist here; served: {', '.join(self.speakable())}",
                           param, "model_not_found")
        dtype = dtype or self.dtype
        if dtype not in manifest.get("dtypes", []):
            raise ApiError(400, f"model {name!r} has no {dtype!r} precision; exported: "
                           f"{', '.join(manifest.get('dtypes', []))}", param, "model_not_found")
        return name, dtype

    def speakable(self) -> list[str]:
        return [n for n in self.dirs if self.manifest(n) is not None]

    def runtime(self, name: str, dtype: str):
        """The shared runtime, loaded (files hash-checked, sessions created) on first use."""
        key = (name, dtype)
        with self._lock:  # one load per key even when the first requests arrive together
            if key not in self._runtimes:
                t = time.perf_counter()
                rt = open_runtime(self.dirs[name], dtype=dtype, threads=self.threads, context=self.context,
                                  codec_threads=self.codec_threads)
                rt.load_streaming()
                if self.batching:
                    self._engines[key] = Engine(rt, self.streams, batch_codec=self.batch_codec)
                self.load_s[f"{name}:{dtype}"] = round(time.perf_counter() - t, 3)
                log.info("loaded %s:%s in %.2f s", name, dtype, self.load_s[f"{name}:{dtype}"])
                self._runtimes[key] = rt
            return self._runtimes[key]

    def engine(self, name: str, dtype: str) -> Engine | None:
        """The loaded runtime's engine (None without batching)."""
        return self._engines.get((name, dtype))

    def engine_stats(self) -> dict:
        return {f"{n}:{d}": e.stats() for (n, d), e in self._engines.items()}

    def close(self) -> None:
        for e in self._engines.values():
            e.stop()

