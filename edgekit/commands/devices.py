"""edgekit devices"""

from __future__ import annotations

import click

from ..tables import dump_json, format_table
from ._common import json_option


@click.command()
@click.option("--profiles", is_flag=True, help="List the device profiles (devices/*.yaml) instead.")
@json_option
def devices(profiles, json_path):
    """Installed runtime backends with versions, and the devices/providers/delegates each sees."""
    if profiles:
        from ..devices import list_profiles

        rows = list_profiles()
        if json_path:
            dump_json(rows, json_path)
        if json_path != "-":
            click.echo(format_table(rows, [c for c in ("name", "arch", "os", "python", "backends", "accelerators",
                                                       "format", "precision", "threads", "memory_mb")
                                           if any(c in r for r in rows)]))
        return
    from ..runtime import describe_backends

    rows = describe_backends()
    if json_path:
        dump_json(rows, json_path)
        if json_path == "-":
            return
    table = []
    for r in rows:
        devs = r["devices"] or [{"device": "-", "kind": "", "detail": r.get("error", "not installed")}]
        for i, d in enumerate(devs):
            table.append({"backend": r["backend"] if i == 0 else "",
                          "version": (r["version"] or f"not installed (pip install 'edgekit[{_extra(r)}]')") if i == 0 else "",
                          "device": d["device"], "kind": d.get("kind", ""), "detail": str(d.get("detail", ""))[:60]})
    click.echo(format_table(table))


def _extra(row) -> str:
    return {"litert": "litert", "onnxruntime": "onnx", "openvino": "openvino"}.get(row["backend"], row["backend"])
