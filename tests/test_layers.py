"""The import graph flows one way (.importlinter): contract at the bottom, runtime, exporter, validation,
then CLI and server; families are independent and nothing outside a family folder imports one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "4 kept" in proc.stdout


def test_family_lookup_discovers_every_folder():
    """A family is a folder under voxport/exporter/families: the lookup finds each one without a list."""
    from voxport.exporter.families import families

    folders = {p.name for p in (ROOT / "voxport/exporter/families").iterdir()
               if (p / "__init__.py").is_file()}
    found = {cls.__module__.rsplit(".", 1)[-1] for cls in families()}
    assert found == folders and len(found) >= 2


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    proc = subprocess.run([str(ruff), "check", "voxport", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
