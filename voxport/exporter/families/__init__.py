"""Model families and the lookup over them. Each subfolder is one family: importing it registers its
Family (voxport/exporter/spec.py `register`). The folders are discovered, not listed, so a new family
is a new folder and nothing else: this package sits above the families, spec.py below them."""

from __future__ import annotations

import importlib
import pkgutil

from voxport.exporter.spec import Family, registered


def families() -> list[type[Family]]:
    for mod in pkgutil.iter_modules(__path__):
        if mod.ispkg:
            importlib.import_module(f"{__name__}.{mod.name}")
    return registered()


def family_for(config: dict) -> type[Family] | None:
    """The family that claims a checkpoint's config.json (Family.claims)."""
    return next((cls for cls in families() if cls.claims(config)), None)
