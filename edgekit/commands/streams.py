"""``edgekit eval --stream`` and ``edgekit calibrate``: keyword spotters judged on streams (edgekit.apps.streams)."""

from __future__ import annotations

import click

from ..errors import ConfigError
from ._common import NON_NEGATIVE_FLOAT, Number, emit, json_option, quiet_option

BUILTIN_HELP = "'builtin' (the built-in test streams: held-out voices), 'builtin:calibration' or 'builtin:dectalk'"


def stream_options(f):
    for opt in reversed([
        click.option("--stream", "streams", multiple=True, metavar="WAV|DIR",
                     help=f"Evaluate on a keyword stream: a WAV, a folder of WAVs (X.json beside X.wav holds its "
                          f"events; a WAV without is negative speech), or {BUILTIN_HELP}. Repeatable."),
        click.option("--events", default=None, metavar="JSON",
                     help="Events of a single --stream WAV: {\"events\": [{\"label\", \"start\", \"end\"}]} "
                          "(none: a negative-only stream)."),
        click.option("--threshold", type=Number(float, min=0.0, max=1.0, min_open=True), default=None,
                     help="Override the operating point's threshold (default: the model's calibrated one)."),
        click.option("--smooth-ms", type=NON_NEGATIVE_FLOAT, default=None, help="Override the smoothing window."),
        click.option("--refractory-ms", type=NON_NEGATIVE_FLOAT, default=None, help="Override the refractory time."),
    ]):
        f = opt(f)
    return f


def _streams(specs, events, quiet):
    from ..apps.streams import load_streams

    out = []
    for spec in specs:
        if spec == "builtin" or spec.startswith("builtin:"):
            if events:
                raise ConfigError("--events goes with a WAV stream, not with the built-in streams")
            from ..data.streams import builtin_streams

            out.extend(builtin_streams(spec.partition(":")[2] or "test", quiet=quiet))
        else:
            out.extend(load_streams(spec, events if len(specs) == 1 else None))
    if events and len(specs) != 1:
        raise ConfigError("--events goes with exactly one --stream WAV")
    return out


def eval_streams(model, device, threads, json_path, *, streams, events, threshold, smooth_ms, refractory_ms,
                 data=None, limit=None, options=(), quiet=False):
    from ..apps.streams import evaluate_streams

    if data or limit or options:
        raise ConfigError("--data, --limit and --option evaluate clips; they can't be combined with --stream")
    ss = _streams(streams, events, quiet or json_path == "-")
    for s in ss:
        for n in s.notes:
            click.echo(f"note: {n}", err=True)
    r = evaluate_streams(model, ss, device=device, threads=threads, threshold=threshold, smooth_ms=smooth_ms,
                         refractory_ms=refractory_ms, quiet=quiet or json_path == "-")
    op = r["operating_point"]
    rows = [{"keyword": p["keyword"], "events": p["events"], "hits": p["hits"], "recall": p["recall"],
             "false_alarms": p["false_alarms"], "fa_per_hour": p["fa_per_hour"]} for p in r["per_keyword"]]
    rows.append({"keyword": "all", "events": r["keywords"], "hits": r["hits"], "recall": r["recall"],
                 "false_alarms": r["false_alarms"], "fa_per_hour": r["fa_per_hour"]})
    lat = r["latency_s"]
    title = (f"{model} on {len(ss)} stream(s), {r['hours'] * 60:.1f} min: recall {r['recall']} "
             f"(false rejects {r['false_reject_rate']}), {r['false_alarms']} false alarms = {r['fa_per_hour']} FA/h; "
             f"latency p50 {lat['p50'] if lat else '-'} s; {r['cost']['ms_per_hop']} ms/hop, RTF "
             f"{r['cost']['real_time_factor']}\noperating point ({'calibrated' if r['calibrated'] else 'defaults'}"
             f"{', overridden' if any(v is not None for v in (threshold, smooth_ms, refractory_ms)) else ''}): "
             f"threshold {op['threshold']}, smooth {op['smooth_ms']:g} ms, refractory {op['refractory_ms']:g} ms")
    emit(rows, json_path, title=title, payload=r)
    if json_path != "-":
        det = [d for d in r["det_curve"] if round(d["threshold"] * 100) % 10 == 0]
        click.echo("\nDET curve (recall vs FA/h over thresholds; every 0.01 in --json)")
        from ..tables import format_table

        click.echo(format_table(det, ["threshold", "recall", "fa_per_hour", "false_alarms"]))
    _speaker_table(r, json_path, "Per speaker, worst recall first")


def _speaker_table(r: dict, json_path, title: str) -> None:
    """Recall and false alarms per speaker (events that name one), after the main table."""
    if r.get("per_speaker") and json_path != "-":
        from ..tables import format_table

        click.echo(f"\n{title} (a false alarm counts against the speech it falls in or just follows)")
        click.echo(format_table(r["per_speaker"], ["speaker", "events", "hits", "recall", "speech_min", "false_alarms",
                                                   "fa_per_hour"]))


@click.command("calibrate")
@click.argument("model", type=click.Path())
@click.option("--stream", "streams", multiple=True, metavar="WAV|DIR",
              help="Calibration streams (default: the built-in calibration streams, whose voices never test). "
                   "A WAV with X.json beside it is a keyword stream; without, negative speech.")
@click.option("--target-fa", type=Number(float, min=0.0), default=1.0, show_default=True,
              help="Most false alarms per hour allowed; the point with the most recall under it is picked.")
@click.option("--per-keyword", is_flag=True,
              help="Also lower single keywords' thresholds where that adds no false alarm on the streams.")
@click.option("--dry-run", is_flag=True, help="Print the operating point; don't write it into the metadata.")
@json_option
@quiet_option
def calibrate(model, streams, target_fa, per_keyword, dry_run, json_path, quiet):
    """Calibrate a keyword spotter's post-processing (threshold, smoothing, refractory time) on streams and
    record the operating point in MODEL's metadata, so the microphone demo, serve and a device use it."""
    from ..apps.streams import calibrate as run

    ss = _streams(list(streams) or ["builtin:calibration"], None, quiet or json_path == "-")
    r = run(model, ss, target_fa, write=not dry_run, quiet=quiet or json_path == "-", per_keyword_thresholds=per_keyword)
    c, op = r["calibration"], r["operating_point"]
    row = {"threshold": op["threshold"], "smooth_ms": op["smooth_ms"], "refractory_ms": op["refractory_ms"],
           "recall": c["recall"], "fa_per_hour": c["fa_per_hour"], "target_met": c["target_met"],
           "hours": c["hours"], "keywords": c["keywords"],
           "per_keyword": ", ".join(f"{k} {v:g}" for k, v in (op.get("thresholds") or {}).items()) or "-"}
    where = "not written (--dry-run)" if dry_run else f"written to {r['sidecar']}"
    emit([row], json_path, title=f"{model}: operating point for <= {target_fa:g} FA/h, {where}", payload=r)
    _speaker_table(r, json_path, "Per speaker at this point, worst recall first")


__all__ = ["stream_options", "eval_streams", "calibrate"]
