"""Tables for the terminal, Markdown and JSON. Device-side safe (no heavy imports)."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Iterable, Sequence


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.3g}" if a < 10 else f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)


def _columns(rows: Sequence[dict], columns: Sequence[str] | None) -> list[str]:
    if columns:
        return list(columns)
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None,
                 headers: dict[str, str] | None = None) -> str:
    """Plain aligned text table; numbers right-aligned."""
    cols = _columns(rows, columns)
    headers = headers or {}
    head = [headers.get(c, c) for c in cols]
    body = [[_fmt(r.get(c)) for c in cols] for r in rows]
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in cols]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(b) for b in body]
    return "\n".join(out)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None,
                   headers: dict[str, str] | None = None) -> str:
    cols = _columns(rows, columns)
    headers = headers or {}
    out = ["| " + " | ".join(headers.get(c, c) for c in cols) + " |",
           "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(out)


def dump_json(obj: Any, path: str | None) -> None:
    """Write JSON to a file atomically, or to stdout when path is '-'."""
    from .fsutil import _json_default, write_json_atomic

    if path in (None, ""):
        return
    if path == "-":
        sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    else:
        write_json_atomic(path, obj)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def percentile_summary(values: Iterable[float], qs=(50, 90, 99)) -> dict[str, float]:
    import numpy as np

    a = np.asarray(list(values), dtype=np.float64)
    out = {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean())}
    for q in qs:
        out[f"p{q}"] = float(np.percentile(a, q))
    return out
