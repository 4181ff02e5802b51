"""File helpers: atomic directories, hashing, and checking an output path before the work that fills it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from voxport.errors import InputError


def cache_root() -> Path:
    """Where voxport keeps materialised presets and saved voices: $VOXPORT_CACHE, else ~/.cache/voxport."""
    return Path(os.environ.get("VOXPORT_CACHE") or Path.home() / ".cache" / "voxport").expanduser()


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


def check_writable(path: Path, what: str = "output") -> None:
    """InputError (one line) unless `path` can be written as a file: its directory exists, it is not a
    directory, and the place takes a new file. Probed by creating (and removing) a temporary file
    beside it, since permission bits say nothing for root or a read-only mount; nothing is left."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; give a file name, e.g. {path / 'out.wav'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{what} {path}: directory {parent} does not exist")
    try:
        if path.exists():
            with open(path, "r+b"):
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", delete=True):
                pass
    except OSError as e:
        where = f"cannot write {path}" if path.exists() else f"cannot create a file in {parent}"
        raise InputError(f"{what} {path}: {where} ({os.strerror(e.errno) if e.errno else e})") from None
