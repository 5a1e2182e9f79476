"""edgekit run"""

from __future__ import annotations

from pathlib import Path

import click

from ..tables import dump_json, format_table
from ._common import OutputFolder, json_option, quiet_option


def print_run_summary(report: dict, json_path: str | None) -> None:
    from ..run_report import terminal_table

    if json_path:
        dump_json(report, json_path)
        if json_path == "-":
            return
    click.echo(format_table(report["steps"]))
    click.echo("")
    click.echo(terminal_table(report))
    best = report.get("best")
    if best:
        what = ("Picked by the target's preference" if best.get("by") == "profile preference"
                else "Fastest passing artifact")
        click.echo(f"\n{what}: {best['format']} {best['precision']} ({best['path']})")
        if best.get("note"):
            click.echo(f"Note: {best['note']}")
    click.echo(f"\nReport: {report['report_paths']['html']}  (also {report['report_paths']['md']})")
    click.echo(f"Finished in {report['seconds']:.1f} s")


@click.command()
@click.argument("recipe")
@click.option("--out", type=OutputFolder(), default=None, help="Run folder (default: runs/<recipe name>).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe field, e.g. --set train.epochs=3 --set steps.0.sparsity=0.8 (repeatable).")
@click.option("--dry-run", is_flag=True, help="Validate the recipe and print the plan; train nothing.")
@json_option
@quiet_option
def run(recipe, out, sets, dry_run, json_path, quiet):
    """Run RECIPE (a YAML file, or the name of a shipped recipe) end to end.

    Each step is cached by the content hash of its inputs and config: a re-run skips what is
    done, and an interrupted run resumes (training loses at most the current epoch).
    """
    from ..pipeline import run_recipe

    say = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    report = run_recipe(recipe, list(sets), out, dry_run=dry_run, quiet=quiet, say=say)
    if dry_run:
        if json_path:
            dump_json(report, json_path)
        if json_path != "-":
            click.echo(f"Recipe {report['recipe']} → {report['out']}")
            click.echo(format_table(report["plan"]))
        return
    print_run_summary(report, json_path)
