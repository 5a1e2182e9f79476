"""Options and output helpers shared by the commands."""

from __future__ import annotations

import click

from ..tables import dump_json, format_table

json_option = click.option("--json", "json_path", metavar="FILE",
                           help="Also write the results as JSON to FILE ('-' for stdout, table suppressed).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress output.")


def emit(rows, json_path=None, columns=None, headers=None, payload=None, title=None):
    """Print rows as a table, and write them (or ``payload``) as JSON when asked."""
    if json_path != "-":
        if title:
            click.echo(title)
        click.echo(format_table(rows, columns, headers) if rows else "(nothing)")
    if json_path:
        dump_json(payload if payload is not None else rows, json_path)


def split_csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def parse_int_list(value: str | None, what: str) -> list[int]:
    out = []
    for v in split_csv(value):
        try:
            n = int(v)
        except ValueError:
            raise click.BadParameter(f"{what} must be comma-separated positive integers; received {value!r}")
        if n < 1:
            raise click.BadParameter(f"{what} must be positive; received {n}")
        out.append(n)
    return out
