"""File helpers shared by export and presets: atomic directories and hashing."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a temporary sibling of `final`; rename it into place only if the block completes.

    A failure or interrupt leaves `final` as it was (absent, or the previous complete version).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
