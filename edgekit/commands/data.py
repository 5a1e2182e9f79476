"""``edgekit data``: datasets."""

from __future__ import annotations

import json

import click

from ._common import POSITIVE_INT, emit, json_option


def parse_options(pairs) -> dict:
    """``key=value`` pairs; values parsed as JSON when they can be (numbers, lists, dicts)."""
    from ..errors import ConfigError

    out = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise ConfigError(f"Options are key=value; received {p!r}")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


data_option = click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
                           help="Dataset option, repeatable (e.g. -o seed=1 -o frontend='{\"kind\":\"logmel\"}').")


@click.group()
def data():
    """Datasets: built-in names, folders and CSV files."""


@data.command("list")
@json_option
def list_(json_path):
    """List the registered datasets."""
    from ..data import describe

    from ..data.detection import describe_builtin

    emit(describe() + describe_builtin(), json_path)


@data.command("info")
@click.argument("dataset")
@click.option("--limit", type=POSITIVE_INT, help="At most this many examples per split.")
@data_option
@json_option
def info(dataset, limit, options, json_path):
    """Load DATASET (a name, folder or CSV) and show its splits, classes and shapes."""
    from ..data import load_dataset
    from ..data.detection import info_cli, is_detection_data

    if is_detection_data(dataset):
        return info_cli(dataset, parse_options(options), json_path)
    ds = load_dataset(dataset, limit=limit, **parse_options(options))
    counts = ds.counts()
    rows = [{"label": str(lab), **{s: counts[s][i] for s in counts}} for i, lab in enumerate(ds.labels)]
    s = ds.summary()
    title = (f"{s['name']}: {s['task']}, {s['classes']} classes, input {tuple(s['input_shape'])} {s['input_dtype']}, "
             + ", ".join(f"{k} {s[k]}" for k in ds.splits))
    emit(rows, json_path, title=title, payload={**s, "counts": counts, "labels": list(ds.labels),
                                                 "preprocessing": ds.preprocessing})


@data.command("prepare")
@click.argument("dataset")
@data_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def prepare(dataset, options, quiet):
    """Build, download or synthesize DATASET into the cache now (e.g. keywords)."""
    from ..data import cache_dir, load_dataset

    opts = parse_options(options)
    if dataset == "keywords":
        opts.setdefault("quiet", quiet)
    ds = load_dataset(dataset, **opts)
    click.echo(f"{ds.name}: " + ", ".join(f"{k} {len(v[1])}" for k, v in ds.splits.items()) + f" (cache: {cache_dir()})")
