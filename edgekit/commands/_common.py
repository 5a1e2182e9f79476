"""Options and output helpers shared by the commands."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from ..limits import MAX_THREADS
from ..tables import dump_json, format_table


def _blocking_file(p: Path) -> Path | None:
    """The nearest existing path at or above ``p`` when it is not a folder (so nothing can be made there)."""
    for q in (p, *p.parents):
        if q.exists():
            return None if q.is_dir() else q
    return None


def _writable_or_fail(p: Path, is_dir: bool, ptype, param, ctx) -> None:
    """Refuse, before any work, a path that can't be written (under /proc or /sys, read-only, a device
    where a folder is asked)."""
    from ..errors import ConfigError
    from ..fsutil import check_writable

    try:
        check_writable(p, is_dir=is_dir)
    except ConfigError as e:
        ptype.fail(str(e), param, ctx)


class OutputFolder(click.Path):
    """A folder a command creates or writes into (--out). Refused before any work when it, or a folder
    above it, is a file."""

    def __init__(self):
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        p = super().convert(value, param, ctx)  # an existing file: "Directory 'x' is a file."
        block = _blocking_file(Path(p).parent)
        if block is not None:
            self.fail(f"can't create folder {str(value)!r}: {str(block)!r} is a file, not a folder", param, ctx)
        _writable_or_fail(p, True, self, param, ctx)
        return p


class OutputFile(click.ParamType):
    """A file a command writes (--json FILE); '-' is stdout. A folder, or a path under a file, is refused
    before any work; missing folders above it are created when it is written."""

    name = "file"

    def __init__(self, stdout: bool = True):
        self.stdout = stdout

    def convert(self, value, param, ctx):
        if (value == "-" and self.stdout) or value is None:
            return value
        s = os.fspath(value)
        p = Path(s)
        if not s.strip() or s.endswith(("/", os.sep)) or p.is_dir():
            self.fail(f"{s!r} is a folder; give a file name, e.g. {str(p / 'results.json')!r}", param, ctx)
        block = _blocking_file(p.parent)
        if block is not None:
            self.fail(f"can't write {s!r}: {str(block)!r} is a file, not a folder", param, ctx)
        _writable_or_fail(p, False, self, param, ctx)
        return s


class Number(click.ParamType):
    """A finite int or float within bounds: the message names the bound (NaN and inf are refused)."""

    def __init__(self, kind=int, min=None, max=None, min_open=False):
        self.kind, self.min, self.max, self.min_open = kind, min, max, min_open
        self.name = "integer" if kind is int else "number"

    def convert(self, value, param, ctx):
        if isinstance(value, self.kind) and not isinstance(value, bool):
            v = value
        else:
            try:
                v = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not {'a whole number' if self.kind is int else 'a number'}", param, ctx)
        if self.kind is float and not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and (v <= self.min if self.min_open else v < self.min):
            self.fail(f"must be {'>' if self.min_open else '>='} {self.min}; received {value!r}", param, ctx)
        if self.max is not None and v > self.max:
            self.fail(f"must be <= {self.max}; received {value!r}", param, ctx)
        return v


POSITIVE_INT = Number(int, min=1)
THREADS = Number(int, min=1, max=MAX_THREADS)  # the bound serve uses too
COUNT = Number(int, min=0)
POSITIVE_FLOAT = Number(float, min=0, min_open=True)
NON_NEGATIVE_FLOAT = Number(float, min=0)
FRACTION = Number(float, min=0, max=1)

json_option = click.option("--json", "json_path", metavar="FILE", type=OutputFile(),
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


def parse_int_list(value: str | None, what: str, top: int | None = None) -> list[int]:
    out = []
    for v in split_csv(value):
        try:
            n = int(v)
        except ValueError:
            raise click.BadParameter(f"{what} must be comma-separated positive integers; received {value!r}")
        if n < 1:
            raise click.BadParameter(f"{what} must be positive; received {n}")
        if top is not None and n > top:
            raise click.BadParameter(f"{what} must be <= {top}; received {n}")
        out.append(n)
    return out
