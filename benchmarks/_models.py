"""Shared by the benchmark scripts: a MobileNetV3-Small exported to every format, cached on disk."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CACHE = Path(os.environ.get("EDGEKIT_BENCH_DIR", Path(__file__).resolve().parent.parent / ".cache" / "bench"))


def mobilenet_v3_small(input_size: int = 96, alpha: float = 0.75, classes: int = 10) -> dict[str, Path]:
    """MobileNetV3-Small (random weights, BatchNorm settled so outputs vary), exported and verified."""
    out = CACHE / f"mnv3s_{input_size}_{alpha}_{classes}"
    files = {"tflite": out / "model.tflite", "onnx": out / "model.onnx", "openvino": out / "model.xml"}
    if all(p.exists() for p in files.values()):
        return files
    import keras
    import numpy as np

    from edgekit.artifact import ArtifactMeta, write_meta
    from edgekit.compat import settle_batchnorm
    from edgekit.export import export_model

    keras.utils.set_random_seed(0)
    m = keras.applications.MobileNetV3Small(input_shape=(input_size, input_size, 3), alpha=alpha, weights=None,
                                            classes=classes, include_preprocessing=False)
    settle_batchnorm(m, np.random.default_rng(1).random((16, input_size, input_size, 3), dtype=np.float32))
    out.mkdir(parents=True, exist_ok=True)
    src = out / "model.keras"
    m.save(src)
    write_meta(src, ArtifactMeta(format="keras", task="image-classification",
                                 labels=[f"class_{i}" for i in range(classes)],
                                 preprocessing={"type": "image", "size": [input_size, input_size], "channels": 3,
                                                "mean": 0.0, "scale": 1 / 255.0, "layout": "NHWC"}))
    res = export_model(src, tuple(files), out, progress=print)
    return dict(res.artifacts)
