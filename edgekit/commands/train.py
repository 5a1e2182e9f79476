"""``edgekit train``."""

from __future__ import annotations

import click

from ._common import Number, json_option, quiet_option
from .data import data_option, parse_options


@click.command()
@click.option("--model", "-m", "model_name", required=True, help="Zoo model name (edgekit zoo list).")
@click.option("--data", "-d", "data", required=True, help="Dataset name, folder or CSV file (edgekit data list).")
@click.option("--epochs", "-e", type=Number(int, min=1, max=100_000),
              help="Epoch budget (default: sized to the data, 12-120 epochs).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Run folder to create.")
@click.option("--batch-size", type=int, help="Examples per step (default: 64; detectors 32).")
@click.option("--lr", "learning_rate", type=float, help="Peak learning rate, cosine decay (default: 0.003; detectors "
              "0.004).")
@click.option("--seed", type=Number(int, min=0, max=2**32 - 1), default=0, show_default=True)
@click.option("--patience", type=int, help="Early stopping after this many epochs without improvement "
              "(default: a quarter of the budget, at least 8; 0 turns it off).")
@click.option("--limit", type=int, help="At most this many examples per split (quick runs).")
@click.option("--no-augment", is_flag=True, help="No augmentation (images: shifts/rotations; audio: noise, shift, "
              "gain, speed, SpecAugment).")
@click.option("--augment-option", "augment_options", multiple=True, metavar="KEY=VALUE",
              help="Audio augmentation: copies, shift_ms, gain_db=[lo,hi], noise_prob, snr_db=[lo,hi], speed=[lo,hi], "
                   "keep_clean.")
@click.option("--weights", help="Start from pretrained weights: 'imagenet' (EfficientNet-Lite0/1/2 from "
              "edgekit[pretrained]; MobileNets), 'keywords' (DS-CNN pretrained on the built-in speech corpus), or a "
              ".keras / .weights.h5 backbone file.")
@click.option("--freeze-epochs", type=int, help="With --weights: epochs with the backbone frozen before fine-tuning "
              "(images: after the head is fit on frozen features, default 0; DS-CNN: default a fifth of the "
              "budget).")
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored"]), default="auto", show_default=True,
              help="auto: MirroredStrategy when several GPUs are visible.")
@click.option("--model-option", "model_options", multiple=True, metavar="KEY=VALUE", help="Builder option, e.g. alpha=0.5.")
@data_option
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@quiet_option
@json_option
def train(model_name, data, epochs, out_dir, batch_size, learning_rate, seed, patience, limit, no_augment,
          augment_options, weights, freeze_epochs, strategy, model_options, options, overwrite, quiet, json_path):
    """Train a zoo model on a dataset into a run folder; re-running resumes an interrupted run."""
    from ..tables import dump_json
    from ..train import train as run

    from ..errors import ConfigError

    augment = parse_options(augment_options) or True
    if no_augment and augment_options:
        raise ConfigError("--no-augment and --augment-option contradict each other; give one")
    if patience is not None and patience < 0:
        raise ConfigError(f"--patience must be >= 0; received {patience}")
    from ..data.detection import is_detection_data
    from ..train_detect import is_detector

    # Unset: each trainer's own default (a detector's differ from a classifier's).
    given = {k: v for k, v in (("batch_size", batch_size), ("learning_rate", learning_rate)) if v is not None}
    if is_detector(model_name) or is_detection_data(data):
        from ..train_detect import train_cli

        return train_cli(model_name, data, epochs, out_dir, **given, seed=seed, patience=patience, limit=limit, augment=not no_augment, weights=weights,
                         model_options=parse_options(model_options), overwrite=overwrite, quiet=quiet,
                         json_path=json_path, unused={"--augment-option": augment_options, "--freeze-epochs":
                                                      freeze_epochs, "--option": options})
    r = run(model_name, data, epochs, out_dir, **given, seed=seed,
            patience=patience, limit=limit, augment=False if no_augment else augment, strategy=strategy,
            weights=weights, freeze_epochs=freeze_epochs,
            model_options=parse_options(model_options), data_options=parse_options(options), overwrite=overwrite,
            quiet=quiet)
    m = r.metrics
    if json_path != "-":
        click.echo(f"{r.model_path}: {m['split']} top-1 {m['top1']:.4f} ({m['correct']}/{m['samples']}; best epoch "
                   f"{m['best_epoch']} of {m['epochs_run']}, budget {m['epochs_budget']}, {m['train_seconds']:.0f} s, "
                   f"{m['params']:,} params, {m['macs']:,} MACs)")
    dump_json({"model": str(r.model_path), **m}, json_path)
