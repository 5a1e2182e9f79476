"""``edgekit eval``."""

from __future__ import annotations

import click

from ._common import POSITIVE_INT, THREADS, emit, json_option
from .data import data_option, parse_options
from .streams import eval_streams, stream_options


@click.command("eval")
@click.argument("model", type=click.Path())
@click.option("--data", "-d", "data", help="Dataset name, folder or CSV (default: the one in the model's metadata).")
@click.option("--split", default="test", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Runtime device for non-Keras formats.")
@click.option("--threads", type=THREADS, help="Intra-op threads for non-Keras formats.")
@click.option("--limit", type=POSITIVE_INT, help="Evaluate at most this many examples.")
@data_option
@click.option("--confusion/--no-confusion", default=True, show_default=True, help="Print the confusion matrix.")
@stream_options
@json_option
def eval_(model, data, split, device, threads, limit, options, confusion, json_path, **stream):
    """Evaluate MODEL (.keras, .tflite, .onnx or OpenVINO .xml) on a dataset split, a detector on a detection
    set (COCO mAP), or a keyword spotter on streams (--stream): recall and false alarms per hour at its
    operating point."""
    if stream["streams"]:
        return eval_streams(model, device, threads, json_path, data=data, limit=limit, options=options, **stream)
    from ..data.detection import is_detection_data
    from ..evaluate_detect import is_detection_artifact

    if is_detection_artifact(model) or (data and is_detection_data(data)):
        from ..evaluate_detect import eval_cli

        return eval_cli(model, data, split, device, threads, limit, json_path)
    from ..evaluate import evaluate
    from ..tables import format_table

    r = evaluate(model, data, split, device=device, threads=threads, limit=limit, data_options=parse_options(options))
    rows = [{"class": k, "accuracy": v, "samples": sum(r["confusion"][i])} for i, (k, v) in enumerate(r["per_class"].items())]
    title = f"{r['model']} ({r['format']}) on {r['data']}/{r['split']}: top-1 {r['top1']:.4f} over {r['samples']} samples"
    if r.get("whole_folder"):
        title += " (every image of the folder: it is not the model's training data)"
    emit(rows, json_path, title=title, payload=r)
    if confusion and json_path != "-":
        labels = [str(s) for s in r["labels"]]
        crow = [{"true \\ pred": labels[i], **{labels[j]: v for j, v in enumerate(row)}} for i, row in enumerate(r["confusion"])]
        click.echo("\nconfusion matrix (rows: true, columns: predicted)")
        click.echo(format_table(crow))
