"""``edgekit demo``: the built-in pipeline demo, or the camera / microphone demo apps (edgekit.apps)."""

from __future__ import annotations

import json
import sys

import click

from ..apps import kws
from ..errors import ConfigError, UnsupportedError
from ._common import (NON_NEGATIVE_FLOAT, POSITIVE_FLOAT, POSITIVE_INT, THREADS, Number, OutputFolder, emit,
                      json_option, quiet_option, split_csv)


@click.group("demo", invoke_without_command=True)
@click.option("--out", default=None, metavar="DIR", type=OutputFolder(), help="Run folder of the built-in pipeline demo.")
@quiet_option
@click.pass_context
def demo(ctx, out, quiet):
    """Run the built-in demo, or the camera / microphone demo apps.

    Without a subcommand: the built-in end-to-end pipeline demo. `edgekit demo camera` classifies
    frames from a camera, video or image folder; `edgekit demo mic` spots keywords from the
    microphone or a WAV file. Both take a local model (--model) or an edgekit serve URL (--url).
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        from ..pipeline import run_demo
    except ModuleNotFoundError as e:
        if e.name not in ("edgekit.pipeline",):
            raise
        raise UnsupportedError("the built-in pipeline demo is not available yet") from None
    from .run import print_run_summary

    say = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    report = run_demo(out=out, quiet=quiet, say=say)
    print_run_summary(report, None)
    if report.get("streams"):
        print_stream_table(report["streams"])


def print_stream_table(st: dict) -> None:
    """The demo's keyword-stream figures (edgekit.pipeline.stream_figures) beside each artifact's clip accuracy."""
    from ..tables import format_table

    click.echo(f"\nKeyword streams (held-out voices: {st['hours']['test']} h, {st['keywords']['test']} keywords; "
               f"operating point calibrated on other voices for <= {st['target_fa_per_hour']:g} FA/h and written "
               f"into each artifact's metadata; {st['seconds']:.0f} s)")
    click.echo(format_table([{"artifact": r["artifact"], "clip_top1": r.get("top1"), "threshold": r["threshold"],
                              "smooth_ms": r["smooth_ms"], "recall": r.get("recall"), "fa_per_hour": r.get("fa_per_hour")}
                             for r in st["rows"]]))


def _model_options(f):
    f = click.option("--threads", type=THREADS, default=None, help="Intra-op threads for the local model.")(f)
    f = click.option("--device", default="cpu", show_default=True, help="Runtime device for the local model.")(f)
    f = click.option("--url", default=None, metavar="URL",
                     help="An edgekit serve server instead: http://HOST:PORT[/v2/models/NAME].")(f)
    f = click.option("--model", "-m", "model", default=None, metavar="FILE",
                     help="A local model file (.tflite, .onnx, OpenVINO .xml) with its metadata.")(f)
    return f


@demo.command("camera")
@_model_options
@click.option("--source", "-s", default="0", show_default=True,
              help="Camera index, 'picamera', a video file, a stream URL or a folder of images.")
@click.option("--headless", is_flag=True, help="No window: one JSON line per frame on stdout, a summary line last.")
@click.option("--save", default=None, metavar="FILE", help="Write the annotated frames as a video (.mp4, .avi, ...).")
@click.option("--top-k", default=3, show_default=True, type=POSITIVE_INT, help="Labels shown per frame.")
@click.option("--max-frames", default=None, type=POSITIVE_INT, help="Stop after this many frames.")
@json_option
@quiet_option
def camera(model, url, device, threads, source, headless, save, top_k, max_frames, json_path, quiet):
    """Classify camera frames (or a video / image folder): top-k labels and FPS on the frames."""
    from ..apps import open_model
    from ..apps.camera import CameraDemo, display_available, open_source

    m = open_model(model, url, device, threads)
    app = CameraDemo(m, top_k=top_k)
    show = not headless
    if show and not display_available():
        click.echo("edgekit demo camera: no display here; running headless (pass --headless to say so)", err=True)
        show = False
    lines = not show and not quiet and json_path != "-"

    def on_result(r):
        if lines:
            click.echo(json.dumps(r.to_dict(), separators=(",", ":")))

    with open_source(source) as src:
        summary = app.run(src, show=show, save=save, max_frames=max_frames, on_result=on_result)
    if lines:
        click.echo(json.dumps({"summary": summary}, separators=(",", ":")))
        if json_path:  # a file here: "-" turns the per-frame lines off
            from ..tables import dump_json

            dump_json(summary, json_path)
        return
    emit([summary], json_path, columns=["frames", "fps", "latency_ms_mean", "latency_ms_p95", "backend", "source"],
         payload=summary)


@demo.command("mic")
@_model_options
@click.option("--wav", default=None, metavar="FILE", help="Stream a WAV recording instead of the microphone.")
@click.option("--labels-file", default=None, metavar="JSON",
              help="Truth for --wav ({\"events\": [{\"label\", \"start\", \"end\"}]}): report hits, misses, false alarms.")
@click.option("--threshold", default=None, type=float,
              help=f"Smoothed posterior that fires a keyword [default: the model's calibrated one, else {kws.THRESHOLD}].")
@click.option("--hop-ms", default=None, type=Number(float, min=1),
              help=f"Classify the 1-s window this often [default: calibrated, else {kws.HOP_MS:g}].")
@click.option("--smooth-ms", default=None, type=NON_NEGATIVE_FLOAT,
              help=f"Average posteriors over this span [default: calibrated, else {kws.SMOOTH_MS:g}].")
@click.option("--refractory-ms", default=None, type=NON_NEGATIVE_FLOAT,
              help=f"Quiet time after a detection [default: calibrated, else {kws.REFRACTORY_MS:g}].")
@click.option("--keywords", default=None, help="Comma-separated labels that may fire (default: all but _silence_/_unknown_).")
@click.option("--duration", default=None, type=POSITIVE_FLOAT, help="Listen to the microphone for this many seconds (default: until Ctrl-C).")
@click.option("--input-device", default=None, help="Microphone (sounddevice index or name).")
@json_option
@quiet_option
def mic(model, url, device, threads, wav, labels_file, threshold, hop_ms, smooth_ms, refractory_ms, keywords, duration,
        input_device, json_path, quiet):
    """Spot keywords from the microphone or a WAV file: each detection with its time and score."""
    from ..apps import open_model
    from ..apps.kws import KeywordSpotter, listen, load_events, print_detection, read_audio, score

    if wav and (duration is not None or input_device is not None):
        raise ConfigError("--duration and --input-device are for the microphone; they can't be combined with --wav")
    if labels_file and not wav:
        raise ConfigError("--labels-file scores a recording: give the recording with --wav")
    events = load_events(labels_file) if labels_file else None  # a bad truth file fails before any work
    m = open_model(model, url, device, threads)
    spotter = KeywordSpotter(m, hop_ms=hop_ms, smooth_ms=smooth_ms, threshold=threshold, refractory_ms=refractory_ms,
                             keywords=split_csv(keywords) or None)
    show = None if quiet or json_path == "-" else print_detection
    if wav:
        audio = read_audio(wav, spotter.sample_rate)
        result = spotter.run(audio, on_detection=show)
    else:
        def started(name):
            if not quiet:
                click.echo(f"Listening on {name}... (Ctrl-C to stop)", err=True)

        result = listen(spotter, duration=duration, device=_device_arg(input_device), on_detection=show,
                        on_start=started)
    payload = {"source": wav or "microphone", "model": model or url, **result.to_dict()}
    row = {"audio_s": payload["audio_seconds"], "detections": len(result.detections),
           "inferences": result.inferences, "ms_per_inference": payload["ms_per_inference"],
           "real_time_factor": payload["real_time_factor"]}
    if events is not None:
        s = score(result.detections, events, window_s=spotter.window_s, keywords=split_csv(keywords) or None)
        payload["score"] = s
        row.update(keywords=s["keywords"], hits=s["hits"], misses=s["misses"], false_alarms=s["false_alarms"])
    emit([row], json_path, payload=payload)


def _device_arg(value):
    if value is None:
        return None
    return int(value) if value.isdigit() else value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(demo())
