"""edgekit info"""

from __future__ import annotations

from pathlib import Path

import click

from ..tables import dump_json, human_bytes
from ._common import json_option


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--device", default="cpu", show_default=True, help="Device to load on (to show what it resolves to).")
@json_option
def info(model, device, json_path):
    """Show MODEL's format, backend, inputs, outputs, quantization, size and metadata."""
    from ..inspect import describe_model

    d = describe_model(model, device=device)
    if json_path:
        dump_json(d, json_path)
        if json_path == "-":
            return
    click.echo(f"{d['path']}")
    click.echo(f"  format      {d['format']}  ({human_bytes(d['size_bytes'])})")
    if d.get("backend"):
        click.echo(f"  backend     {d['backend']} on {d['device']}")
    click.echo(f"  precision   {d['precision']}")
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            dims = "x".join("?" if s is None else str(s) for s in t["shape"])
            q = f"  scale={t['scale']:.4g} zero_point={t['zero_point']}" if "scale" in t else ""
            click.echo(f"  {kind[:-1]:<11} {t['name']}  [{dims}] {t['dtype']}{q}")
    byom = d.get("byom") or {}
    if byom.get("inferred"):
        inf = byom["inferred"]
        click.echo(f"  inferred    layout {inf['layout']}, {inf['channels']} channels, size "
                   + "x".join("?" if s is None else str(s) for s in inf["size"]) + " (from the input shape)")
    for n in byom.get("needs") or []:
        click.echo(f"  needs       {n}")
    meta = d.get("metadata") or {}
    if meta:
        labels = meta.get("labels") or []
        click.echo(f"  labels      {len(labels)}: {', '.join(map(str, labels[:12]))}{' ...' if len(labels) > 12 else ''}")
        if meta.get("preprocessing"):
            click.echo(f"  preprocess  {meta['preprocessing']}")
        if meta.get("metrics"):
            click.echo(f"  metrics     {meta['metrics']}")
        v = meta.get("verification") or {}
        if v:
            click.echo(f"  verified    max_abs_diff={v.get('max_abs_diff')} top1={v.get('top1_agreement')} "
                       f"passed={v.get('passed')}")
        if meta.get("sparsity") is not None:
            click.echo(f"  sparsity    {meta['sparsity']:.1%}")
        prov = meta.get("provenance") or {}
        if prov:
            click.echo(f"  made        {prov.get('created', '?')} from {prov.get('source', '?')}")
    else:
        click.echo("  metadata    none (no sidecar .json and nothing embedded)")
