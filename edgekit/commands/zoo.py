"""``edgekit zoo``: the model zoo."""

from __future__ import annotations

import click

from ._common import emit, json_option, split_csv


@click.group()
def zoo():
    """The model zoo: compact models for images, keywords and text."""


@zoo.command("list")
@click.option("--input", "input_shape", metavar="SHAPE", help="Input shape for every model, e.g. 96,96,3 or 49,10 "
              "(default: each model's typical input).")
@click.option("--models", "names", metavar="NAMES", help="Comma-separated model names (default: all).")
@json_option
def list_(input_shape, names, json_path):
    """List models with parameters and MACs (multiply-accumulates per example)."""
    from ..errors import ConfigError
    from ..zoo import describe, models

    shape = None
    if input_shape:
        try:
            shape = tuple(int(v) for v in split_csv(input_shape.replace("x", ",")))
        except ValueError:
            raise ConfigError(f"--input must be comma-separated integers like 96,96,3; received {input_shape!r}")
        if not shape or min(shape) < 1:
            raise ConfigError(f"--input dimensions must be integers >= 1, like 96,96,3; received {input_shape!r}")
    rows = describe(shape, models.parse_list(names) if names else None)
    emit(rows, json_path, columns=["name", "task", "input", "params", "macs", "description"])
