"""A properly trained DS-CNN-S keyword spotter on the espeak ``keywords`` set, exported to TFLite, cached.

Trained on the training voices only; the benchmark's test stream is spoken by the held-out test voices.
For streaming, the training clips are shifted up to +-200 ms (edgekit.apps.synth.streaming_keywords).
Usage (to prepare it ahead of time): python benchmarks/_kws_model.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CACHE = Path(os.environ.get("EDGEKIT_BENCH_DIR", Path(__file__).resolve().parent.parent / ".cache" / "bench"))
RECIPE = {"model": "ds_cnn_s", "reps": 8, "augment_copies": 4, "shift_ms": 200, "epochs": 40, "patience": 10, "seed": 0}


def kws_model(quiet: bool = True) -> Path:
    """The exported .tflite (with sidecar) of the recipe above, trained once and cached."""
    r = RECIPE
    out = CACHE / f"kws_{r['model']}_r{r['reps']}_a{r['augment_copies']}_s{r['shift_ms']}_e{r['epochs']}"
    tfl = out / "export" / "model.tflite"
    if tfl.exists():
        return tfl
    from edgekit.export import export_model
    from edgekit.train import train

    run = out / "run"
    if not (run / "model.keras").exists():
        from edgekit.apps.synth import streaming_keywords

        ds = streaming_keywords(r["reps"], r["augment_copies"], r["shift_ms"], r["seed"])
        # train() resumes from its .partial folder when interrupted, so a killed run is not lost.
        res = train(r["model"], ds, epochs=r["epochs"], out_dir=run, patience=r["patience"], seed=r["seed"], quiet=quiet)
        print(f"trained: top-1 {res.metrics['top1']:.3f} on held-out test voices "
              f"({res.metrics['epochs_run']} epochs, {res.metrics['train_seconds']:.0f} s)", file=sys.stderr)
    res = export_model(run / "model.keras", ("tflite",), out / "export")
    return Path(res.artifacts["tflite"])


if __name__ == "__main__":
    print(kws_model(quiet=False))
