"""edgekit compress"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError, DataError, ModelError
from ..formats import FORMATS
from ._common import OutputFolder, json_option, quiet_option

from ..passes import DistillConfig, GateConfig, PruneConfig, QuantizeConfig, click_options, config_from_options


# The pass options come from the pass schemas (edgekit/passes.py): names, defaults, help and the checks
# on each value, which run while the command line is parsed, before anything heavy is imported.
@click.command()
@click.argument("model")
@click.option("-d", "--data", required=True, help="Dataset name, folder or CSV (the model's training data).")
@click.option("--out", "out_dir", type=OutputFolder(), required=True, help="Output folder.")
@click_options(PruneConfig, defaults={"sparsity": None})
@click.option("--distill-from", "teacher", default=None,
              help="Teacher .keras; MODEL is the student (.keras, or a zoo name to train from scratch).")
@click_options(DistillConfig)
@click_options(QuantizeConfig, defaults={"precision": None})
@click.option("--calibration", "calibration_path", type=click.Path(path_type=Path), default=None,
              help="A .npy array of calibration inputs (default: the training split).")
@click.option("--formats", default=",".join(FORMATS), show_default=True, help="Comma-separated formats.")
@click_options(GateConfig)
@click.option("--profile", default=None, help="Device profile: pick the fastest passing artifact for it.")
@click.option("--epochs", type=int, default=None, help="Fine-tune (pruning) / distillation epochs.")
@click.option("--lr", type=float, default=None, help="Learning rate for fine-tuning / distillation.")
@click.option("--bench-runs", type=int, default=100, show_default=True, help="Timed runs per artifact (0: skip).")
@click.option("--name", default=None, help="File stem of the artifacts (default: the model's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--labels", "labels_file", type=click.Path(path_type=Path), default=None,
              help="Foreign model: class labels file (one per line, or a JSON list), recorded in the artifacts.")
@click.option("--preprocess", default=None,
              help="Foreign model: e.g. 'imagenet,size=224' or 'size=224,layout=NCHW,mean=123.7/116.3/103.5,"
                   "std=58.4/57.1/57.4,color=RGB' (or scale=); what the input shape tells is inferred.")
@click.option("--input", "input_name", default=None, help="Foreign model: the image input's name.")
@json_option
@quiet_option
def compress(model, data, out_dir, teacher, calibration_path, formats, profile, epochs, lr, bench_runs, name, seed,
             labels_file, preprocess, input_name, json_path, quiet, **passes):
    """Prune, distill and quantize MODEL (.keras), export it, and gate every artifact on accuracy.

    --quantize takes one precision or several (int8,fp16): each is made in every format and
    evaluated on held-out data against the float model. An int8 artifact that loses more than
    --max-drop top-1 points climbs the ladder in order (more calibration data, per-channel,
    sensitive layers in float, QAT, mixed precision, int16 activations) and is never written if
    no rung passes. Prints a table and writes report.json and report.md to --out.

    A detector (.keras from edgekit train with detection data) takes --data a detection set
    (YOLO, COCO, VOC folder or shapes) and --quantize only: each rung is judged in points of
    mAP@[.5:.95] (centroid F1 for FOMO) on held-out images; QAT is not on its ladder.

    MODEL may also be a model edgekit did not train (.onnx, .tflite or a SavedModel folder) with
    --quantize int8 and --data an image folder: class subfolders named after --labels give the
    accuracy gate; plain images give a fidelity gate against the float model (--min-agreement,
    --min-top5). ONNX becomes int8 ONNX and OpenVINO IR; a float TFLite becomes OpenVINO IR; a
    SavedModel becomes all three.
    """
    from ..export import exporters

    # Everything a user can get wrong is checked here, before TensorFlow is imported.
    fmts = exporters.parse_list(formats)
    sparsity, quantize = passes["prune_sparsity"], passes["quantize_precision"]
    if quantize is None:
        used = [f"--{k.removeprefix('quantize_').replace('_', '-')}" for k, v in passes.items()
                if k.startswith("quantize_") and k != "quantize_precision"
                and v not in (None, False, [], QuantizeConfig.__dataclass_fields__[k[9:]].default)]
        if used:
            raise ConfigError(f"{', '.join(used)} needs --quantize int8")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be >= 1 (fine-tuning / distillation epochs); received {epochs}")
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr must be > 0; received {lr}")
    if bench_runs < 0:
        raise ConfigError(f"--bench-runs must be >= 0; received {bench_runs}")
    # Every pass config is built and validated now: a bad value stops here, not after training.
    prune_cfg = distill_cfg = quant_cfg = None
    if sparsity is not None:
        prune_cfg = config_from_options(PruneConfig, passes, seed=seed, epochs=epochs, learning_rate=lr)
    if teacher is not None:
        distill_cfg = config_from_options(DistillConfig, passes, seed=seed, epochs=epochs, learning_rate=lr)
    if quantize is not None:
        from ..formats import check_precisions

        quant_cfg = config_from_options(QuantizeConfig, passes, seed=seed)
        check_precisions(fmts, quant_cfg.precision)
    gate_cfg = config_from_options(GateConfig, passes)
    if profile:
        from ..devices import load_profile

        load_profile(profile)
    from ..compress.foreign import source_kind

    if Path(model).exists() and source_kind(model) is not None:
        return _compress_foreign(model, data, out_dir, teacher, calibration_path, formats, fmts, passes, bench_runs,
                                 name, seed, labels_file, preprocess, input_name, profile, json_path, quiet)
    for flag, v in (("--labels", labels_file), ("--preprocess", preprocess), ("--input", input_name)):
        if v is not None:
            raise ConfigError(f"{flag} is for models edgekit did not train (.onnx, .tflite, SavedModel); a .keras "
                              "model carries its labels and preprocessing")
    if sparsity is None and teacher is None and quantize is None:
        raise ConfigError("Nothing to do: give --prune, --distill-from and/or --quantize")
    if name is not None:
        from ..artifact import check_file_stem

        check_file_stem(name, "--name")
    is_zoo_name = not Path(model).suffix and not Path(model).exists()
    if is_zoo_name and teacher is None:
        raise ModelError(f"No such model file: {model} (a zoo model name is only allowed as a student with "
                         "--distill-from)")
    if not is_zoo_name and not Path(model).exists():
        raise ModelError(f"No such model file: {model}")
    if teacher is not None and not Path(teacher).exists():
        raise ModelError(f"No such teacher model file: {teacher}")
    calibration = None
    if calibration_path is not None:
        if quantize is None:
            raise ConfigError("--calibration needs --quantize int8")
        calibration = _load_calibration(calibration_path)

    from ..compress import ExportConfig, compress as run
    from ..compress.report import render

    export_cfg = ExportConfig(formats=tuple(fmts), gate=gate_cfg, bench_runs=bench_runs, profile=profile, name=name)
    say = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    _report(lambda: run(model, data, out_dir, prune=prune_cfg, distill=distill_cfg, teacher=teacher,
                        quantize=quant_cfg, export=export_cfg, calibration=calibration, progress=say),
            render, out_dir, json_path)


def _report(work, render, out_dir: Path, json_path) -> None:
    """Run the compression, print its table (also the part that passed when a gate missed), write --json."""
    from ..errors import GateError

    try:
        res = work()
    except GateError as e:
        if getattr(e, "result", None) is not None and json_path != "-":
            click.echo(render(e.result))
        raise
    if json_path != "-":
        click.echo(render(res))
        click.echo(f"report: {out_dir / 'report.md'}")
    if json_path:
        from ..tables import dump_json

        dump_json(res.to_dict(), json_path)


def _load_calibration(path: Path):
    import numpy as np

    if not path.exists():
        raise DataError(f"Calibration file {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise DataError(f"Calibration file {path} is not a .npy array ({e})") from None


def _compress_foreign(model, data, out_dir, teacher, calibration_path, formats, fmts, passes, bench_runs, name, seed,
                      labels_file, preprocess, input_name, profile, json_path, quiet):
    """A model edgekit did not train: every check first (compress.foreign), then int8 and the gate."""
    from ..compress.foreign import check_foreign, compress_foreign
    from ..compress.report import render

    check_foreign(model, prune=passes["prune_sparsity"] is not None, distill=teacher is not None,
                  quantize=passes["quantize_precision"] is not None)
    if profile:
        raise ConfigError("--profile is not available for a foreign model yet; compress, then edgekit bench on "
                          "the device")
    quant_cfg = config_from_options(QuantizeConfig, passes, seed=seed)
    gate_cfg = config_from_options(GateConfig, passes)
    if name is not None:
        from ..artifact import check_file_stem

        check_file_stem(name, "--name")
    calibration = None
    if calibration_path is not None:
        calibration = _load_calibration(calibration_path)
    say = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    explicit = formats != ",".join(FORMATS)
    _report(lambda: compress_foreign(model, data, out_dir, quantize=quant_cfg, gate=gate_cfg, formats_=tuple(fmts),
                                     explicit_formats=explicit, labels=labels_file, preprocess=preprocess,
                                     input_name=input_name, name=name, bench_runs=bench_runs,
                                     calibration=calibration, progress=say),
            render, out_dir, json_path)
