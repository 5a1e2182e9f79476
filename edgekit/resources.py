"""Where shipped YAML lives: the source checkout's top-level folders (``recipes/``, ``devices/``),
else ``<prefix>/share/edgekit/<kind>`` where a wheel install puts them (pyproject data-files)."""

from __future__ import annotations

import sys
from pathlib import Path


def resource_dirs(kind: str) -> list[Path]:
    here = Path(__file__).resolve().parent
    candidates = [here.parent / kind, Path(sys.prefix) / "share" / "edgekit" / kind, here / "_resources" / kind]
    return [d for d in candidates if d.is_dir()]


def find_resource(kind: str, name: str, suffixes=(".yaml", ".yml")) -> Path | None:
    for d in resource_dirs(kind):
        for suf in ("",) + tuple(suffixes):
            p = d / f"{name}{suf}"
            if p.is_file():
                return p
    return None


def list_resources(kind: str, suffixes=(".yaml", ".yml")) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in resource_dirs(kind):
        for p in sorted(d.iterdir()):
            if p.suffix in suffixes and p.stem not in found:
                found[p.stem] = p
    return found
