"""What the numbers were measured on: CPU, cores, GPU, library versions, and the memory bandwidth
the roofline divides by (measured here, not taken from a data sheet)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

LIBRARIES = ["torch", "transformers", "onnxruntime", "onnxruntime-gpu", "onnx", "onnxscript", "numpy"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a broken CUDA install is "no GPU" for the record
        return None


def versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def describe() -> dict:
    import psutil

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "gpu": gpu(), "platform": platform.platform(), "python": platform.python_version(),
            "libraries": versions(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def machine_name(desc: dict) -> str:
    """A short file-name-safe tag: cpu model words and core count (plus the GPU when there is one)."""
    words = [w for w in desc["cpu"].replace("(R)", "").replace("(TM)", "").split() if w.lower() not in ("cpu", "processor")]
    tag = "-".join(words[:3]) + f"-{desc['cores']}c"
    if desc.get("gpu"):
        tag += "-" + desc["gpu"].split()[-1]
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in tag).lower()


def read_bandwidth(threads: int, gib: float = 1.0, repeats: int = 5) -> float:
    """GB/s for streaming a weight matrix far larger than the caches through a matrix-vector product
    (what a frame does with every weight at batch 1), with the thread count the runtimes use.
    The median of `repeats`, after one warm-up."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        w, v = torch.ones(int(gib * 2**30) // 4 // 4096, 4096), torch.ones(4096)
        torch.mv(w, v)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mv(w, v)
            times.append(time.perf_counter() - t)
        return w.numel() * 4 / statistics.median(times) / 1e9
    finally:
        torch.set_num_threads(before)


class OtherCpu:
    """Cores other processes kept busy between `start()` and `cores()` (Linux /proc; None elsewhere):
    on a shared machine a timing means little without it (the load average lags by a minute and
    counts this process too)."""

    def __init__(self):
        self.start()

    @staticmethod
    def _ticks() -> tuple[int, int] | None:
        try:
            cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            return None
        busy = sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait
        return busy, int(mine[11]) + int(mine[12])  # this process's utime + stime, every thread

    def start(self) -> None:
        self._t, self._at = self._ticks(), time.perf_counter()

    def cores(self) -> float | None:
        now, t = self._ticks(), time.perf_counter() - self._at
        if now is None or self._t is None or t <= 0:
            return None
        others = (now[0] - self._t[0]) - (now[1] - self._t[1])
        return max(0.0, others / os.sysconf("SC_CLK_TCK") / t)
