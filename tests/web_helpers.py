"""Browser test plumbing: the demo server on a free port and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from voxport.serve import WEB_ROOT, make_server

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download does not work here (no CDN); Debian's Chromium does.
FLAGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-unsafe-webgpu",
         "--autoplay-policy=no-user-gesture-required"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"


def require_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (`make test` installs it with apt)")
    if not (WEB_ROOT / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("web/node_modules missing (`make test` runs npm ci)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("python playwright missing (pip install -e .[test])")


@contextmanager
def serving(dirs: list[Path]):
    srv = make_server(dirs, port=0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()


def copy_artifact(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


class Console:
    """Console errors and uncaught exceptions of a page (a clean page has none)."""

    def __init__(self, page, allowed: tuple[str, ...] = ()):
        self.errors: list[str] = []
        self.allowed = allowed
        page.on("console", lambda m: m.type == "error" and self._add(m.text))
        page.on("pageerror", lambda e: self._add(f"uncaught: {e}"))

    def _add(self, text: str):
        if not any(a in text for a in self.allowed):
            self.errors.append(text)
