"""edgekit export"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ModelError
from ._common import NON_NEGATIVE_FLOAT, POSITIVE_INT, Number, OutputFolder, emit, json_option, quiet_option


def _labels(value: str | None) -> list[str] | None:
    if not value:
        return None
    if value.startswith("@"):
        from ..artifact import read_labels

        return read_labels(value[1:], "--labels @FILE")
    from ..artifact import unique_labels

    return unique_labels([v.strip() for v in value.split(",") if v.strip()], "--labels")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--to", "formats", default="tflite,onnx,openvino", show_default=True,
              help="Comma-separated formats: tflite, onnx, openvino.")
@click.option("--out", "out_dir", type=OutputFolder(), required=True, help="Output folder.")
@click.option("--name", default="model", show_default=True, help="File stem of the artifacts (no folders).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Compare each artifact with the source model through edgekit's runtime.")
@click.option("--samples", default=32, show_default=True, type=POSITIVE_INT, help="Random inputs used for verification.")
@click.option("--atol", default=1e-4, show_default=True, type=NON_NEGATIVE_FLOAT,
              help="Allowed max abs difference of the first output.")
@click.option("--batch", type=POSITIVE_INT, default=None, help="Fix the batch dimension (default: dynamic).")
@click.option("--opset", type=Number(int, min=9), default=17, show_default=True, help="ONNX opset.")
@click.option("--labels", default=None, help="Class labels 'a,b,c' or @file (one per line); default: sidecar.")
@json_option
@quiet_option
def export(model, formats, out_dir, name, verify, samples, atol, batch, opset, labels, json_path, quiet):
    """Export MODEL (.keras file or SavedModel folder) to TFLite, ONNX and OpenVINO IR.

    Every artifact is loaded back through edgekit's runtime and compared with the source on
    random inputs (max abs difference and top-1 agreement); a failed comparison is an error
    and leaves no file under the final name unless --no-verify.
    """
    from ..export import exporters

    from ..artifact import ArtifactMeta, check_file_stem, read_meta

    fmts = exporters.parse_list(formats)  # before importing TensorFlow: bad names fail fast
    check_file_stem(name, "--name")
    if not model.exists():
        raise ModelError(f"No such model: {model}")
    lab = _labels(labels)
    meta = read_meta(model) or ArtifactMeta()
    from ..export import export_model

    if lab:
        meta.labels = lab
    say = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    res = export_model(model, fmts, out_dir, name=name, meta=meta, verify=verify, samples=samples, atol=atol,
                       batch=batch, options={"onnx": {"opset": opset}}, progress=say)
    emit(res.rows(), json_path, columns=["format", "file", "size_kb", "export_s", "max_abs_diff", "top1_agree",
                                         "verified"],
         payload={"artifacts": {k: str(v) for k, v in res.artifacts.items()}, "verification": res.verification,
                  "export_seconds": res.timings, "sizes": res.sizes})
