"""edgekit compress"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError, DataError, ModelError, allowed
from ._common import OutputFolder, json_option, quiet_option

QUANTIZE = ("int8",)


@click.command()
@click.argument("model")
@click.option("-d", "--data", required=True, help="Dataset name, folder or CSV (the model's training data).")
@click.option("--out", "out_dir", type=OutputFolder(), required=True, help="Output folder.")
@click.option("--prune", "sparsity", type=float, default=None,
              help="Fraction in (0, 1): of weights zeroed (magnitude) or of filters removed (channels).")
@click.option("--prune-mode", type=click.Choice(["magnitude", "channels"]), default="magnitude", show_default=True)
@click.option("--prune-recover", type=click.Choice(["labels", "distill"]), default="labels", show_default=True,
              help="Fine-tune after pruning on the labels, or distill from the unpruned model.")
@click.option("--prune-stages", type=int, default=1, show_default=True,
              help="Channels: remove the filters in this many rounds, fine-tuning after each.")
@click.option("--criterion", type=click.Choice(["l1", "bn"]), default="l1", show_default=True,
              help="Channel ranking: kernel L1 norm or BatchNorm |gamma|.")
@click.option("--distill-from", "teacher", default=None,
              help="Teacher .keras; MODEL is the student (.keras, or a zoo name to train from scratch).")
@click.option("--temperature", type=float, default=4.0, show_default=True)
@click.option("--alpha", type=float, default=0.3, show_default=True, help="Weight of the hard-label loss.")
@click.option("--quantize", default=None, help="Precision to quantize to: int8.")
@click.option("--int8-io", is_flag=True, help="TFLite: int8 input and output tensors.")
@click.option("--calibration", "calibration_path", type=click.Path(path_type=Path), default=None,
              help="A .npy array of calibration inputs (default: the training split).")
@click.option("--calibration-samples", type=int, default=200, show_default=True)
@click.option("--formats", default="tflite,onnx,openvino", show_default=True, help="Comma-separated formats.")
@click.option("--max-drop", type=float, default=1.0, show_default=True,
              help="Top-1 points an artifact may lose against the float model.")
@click.option("--profile", default=None, help="Device profile: pick the fastest passing artifact for it.")
@click.option("--epochs", type=int, default=None, help="Fine-tune (pruning) / distillation epochs.")
@click.option("--lr", type=float, default=None, help="Learning rate for fine-tuning / distillation.")
@click.option("--bench-runs", type=int, default=100, show_default=True, help="Timed runs per artifact (0: skip).")
@click.option("--name", default=None, help="File stem of the artifacts (default: the model's).")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@quiet_option
def compress(model, data, out_dir, sparsity, prune_mode, prune_recover, prune_stages, criterion, teacher,
             temperature, alpha, quantize, int8_io, calibration_path, calibration_samples, formats, max_drop, profile,
             epochs, lr, bench_runs, name, seed, json_path, quiet):
    """Prune, distill and quantize MODEL (.keras), export it, and gate every artifact on accuracy.

    Every artifact is evaluated on held-out data against the float model; one that loses more
    than --max-drop top-1 points gets the remedies in order (more calibration data,
    per-channel, sensitive layers in float, QAT) and is never written if none passes. Prints
    a table and writes report.json and report.md to --out.
    """
    from ..export import exporters

    # Everything a user can get wrong is checked here, before TensorFlow is imported.
    fmts = exporters.parse_list(formats)
    if sparsity is not None and not 0.0 < sparsity < 1.0:
        raise ConfigError(f"--prune must be strictly between 0 and 1; received {sparsity:g}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(allowed(quantize, QUANTIZE, "--quantize precision"))
    if int8_io and quantize is None:
        raise ConfigError("--int8-io needs --quantize int8")
    if epochs is not None and epochs < 0:
        raise ConfigError(f"--epochs must be >= 0; received {epochs}")
    if calibration_samples < 1:
        raise ConfigError(f"--calibration-samples must be >= 1; received {calibration_samples}")
    if profile:
        from ..devices import load_profile

        load_profile(profile)
    if sparsity is None and teacher is None and quantize is None:
        raise ConfigError("Nothing to do: give --prune, --distill-from and/or --quantize")
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
        import numpy as np

        if not calibration_path.exists():
            raise DataError(f"Calibration file {calibration_path} does not exist")
        try:
            calibration = np.load(calibration_path, allow_pickle=False)
        except Exception as e:
            raise DataError(f"Calibration file {calibration_path} is not a .npy array ({e})") from None

    from ..compress import (DistillConfig, ExportConfig, GateConfig, PruneConfig, QuantizeConfig,
                            compress as run)
    from ..compress.report import render

    prune_cfg = distill_cfg = quant_cfg = None
    if sparsity is not None:
        prune_cfg = PruneConfig(sparsity=sparsity, mode=prune_mode, criterion=criterion, recover=prune_recover,
                                stages=prune_stages, seed=seed)
        if epochs is not None:
            prune_cfg.epochs = epochs
        if lr is not None:
            prune_cfg.learning_rate = lr
    if teacher is not None:
        distill_cfg = DistillConfig(temperature=temperature, alpha=alpha, seed=seed)
        if epochs:
            distill_cfg.epochs = epochs
        if lr is not None:
            distill_cfg.learning_rate = lr
    if quantize is not None:
        quant_cfg = QuantizeConfig(precision=quantize, int8_io=int8_io, calibration_samples=calibration_samples,
                                   seed=seed)
    export_cfg = ExportConfig(formats=tuple(fmts), gate=GateConfig(max_drop=max_drop), bench_runs=bench_runs,
                              profile=profile, name=name)
    say = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    from ..errors import GateError

    try:
        res = run(model, data, out_dir, prune=prune_cfg, distill=distill_cfg, teacher=teacher, quantize=quant_cfg,
                  export=export_cfg, calibration=calibration, progress=say)
    except GateError as e:
        if getattr(e, "result", None) is not None and json_path != "-":
            click.echo(render(e.result))
        raise
    if json_path != "-":
        click.echo(render(res))
        click.echo(f"report: {out_dir / 'report.md'}")
    if json_path:
        from ..report import dump_json

        dump_json(res.to_dict(), json_path)
