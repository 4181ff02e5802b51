"""File helpers: atomic directories and files, hashing, and checking an output path before the work
that fills it. Nothing here ever leaves a user's file half-written or removes one it was not asked to."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable

from voxport.errors import InputError, OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _why(e: OSError) -> str:
    return os.strerror(e.errno) if e.errno else str(e)


def cache_root() -> Path:
    """Where voxport keeps materialised presets and saved voices: $VOXPORT_CACHE, else ~/.cache/voxport."""
    return Path(os.environ.get("VOXPORT_CACHE") or Path.home() / ".cache" / "voxport").expanduser()


@contextlib.contextmanager
def atomic_dir(final: Path, replaceable: Callable[[Path], bool] | None = None, what: str = "output"):
    """Yield a temporary sibling of `final`; rename it into place only if the block completes.

    A failure or interrupt leaves `final` as it was (absent, or the previous complete version). An
    existing `final` is replaced only when `replaceable(final)` says it may be (None: any directory),
    and only after the new one is complete.
    """
    final = Path(final)
    check_dir_target(final, replaceable, what)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would become the artifact's mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    check_dir_target(final, replaceable, what)  # again: it may have changed during the work
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def check_dir_target(path: Path, replaceable: Callable[[Path], bool] | None = None, what: str = "output") -> None:
    """InputError (one line) unless a directory can be written at `path`: it is absent, an empty
    directory, or one `replaceable` accepts; and the nearest existing parent takes a new entry
    (probed by creating and removing a temporary directory, since permission bits say nothing for
    root or a read-only mount)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise InputError(f"{what} {path} exists and is not a directory; give a new directory name")
        try:
            empty = not any(path.iterdir())
        except OSError as e:
            raise InputError(f"{what} {path}: cannot read it ({_why(e)})") from None
        if not empty and replaceable is not None and not replaceable(path):
            raise InputError(f"{what} {path} exists and is not a voxport artifact directory; refusing to replace "
                             "it: give a new or empty directory")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{what} {path}: {parent} is not a directory")
    try:
        Path(tempfile.mkdtemp(prefix=f".{path.name}.probe-", dir=parent)).rmdir()
    except OSError as e:
        raise InputError(f"{what} {path}: cannot create a directory in {parent} ({_why(e)})") from None


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
    try:  # the file is written beside its target and renamed: the directory must take a new file
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", delete=True):
            pass
        if path.exists():
            with open(path, "rb"):
                pass
    except OSError as e:
        raise InputError(f"{what} {path}: cannot create a file in {parent} ({_why(e)})") from None


def same_files(paths: dict[str, str | Path | None]) -> None:
    """InputError when two outputs (flag -> path) name one file (compared resolved: `a.wav`, `./a.wav`
    and a symlink to it are one file); '-' (stdout) and None are skipped."""
    seen: dict[Path, str] = {}
    for flag, p in paths.items():
        if p is None or str(p) == "-":
            continue
        key = Path(p).resolve()
        if key in seen:
            raise InputError(f"{flag} and {seen[key]} name the same file ({p}); give each output its own path")
        seen[key] = flag


class AtomicFile:
    """A file written beside its target (`.NAME.XXXX.partial`) and renamed over it by commit(); the
    target is untouched until then, and discard() removes the partial file. A file object for
    libsndfile's virtual I/O too: a write error is recorded (`error`) and reported as a short write,
    since an exception inside libsndfile's callback would only be printed, then raised by commit()."""

    def __init__(self, target: Path, what: str = "output"):
        self.target, self.what, self.error = Path(target), what, None
        fd, tmp = tempfile.mkstemp(dir=self.target.parent if str(self.target.parent) else ".",
                                   prefix=f".{self.target.name}.", suffix=".partial")
        self.tmp = Path(tmp)
        # the mode the file would have had: the target's own, else the umask's (mkstemp makes 0600)
        os.chmod(fd, stat.S_IMODE(self.target.stat().st_mode) if self.target.exists() else 0o666 & ~_umask())
        self.file = os.fdopen(fd, "w+b")

    # -- the file-object surface soundfile needs (read, write, seek, tell) --------------------------
    def write(self, data) -> int:
        if self.error is not None:
            return 0
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            return 0

    def read(self, n: int = -1) -> bytes:
        return self.file.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as e:
            self.error = self.error or e

    def raise_error(self) -> None:
        if self.error is not None:
            raise OutputError(f"{self.what} {self.target}: cannot write ({_why(self.error)}); "
                              f"{'the existing file was left as it was' if self.target.exists() else 'nothing written'}")

    def commit(self) -> None:
        try:
            self.flush()
            self.raise_error()
            try:
                self.file.close()
                os.replace(self.tmp, self.target)
            except OSError as e:
                self.error = e
                self.raise_error()
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(target: Path, what: str = "output"):
    """`with atomic_file(p) as f: f.write(...)`: committed when the block completes, else discarded.
    A write error (disk full) is one OutputError line and the target is as it was."""
    f = AtomicFile(target, what)
    try:
        yield f
    except BaseException as e:
        f.discard()
        if f.error is not None:
            f.raise_error()
        if isinstance(e, OSError):
            f.error = e
            f.raise_error()
        raise
    f.commit()
