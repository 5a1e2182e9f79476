"""What TFLite's bias-correction rung buys on a real ImageNet model: EfficientNet-Lite0 with its published head
(edgekit[pretrained]), int8 per-channel through the TFLite converter, then the same model with each int8
layer's mean output error against float taken off its bias (edgekit.compress.quantizers.tflite.bias_correct),
after one and two passes.

    python benchmarks/tflite_bias_correction.py [--calibration 200] [--crops 1000] [--seed 2] [--work DIR]

Calibrates on the first ``--calibration`` of imagenet_int8.py's 500 crops of scikit-learn's sample photos
(edgekit.photos, seed 1) and prints top-1 agreement with float and float top-1 inside int8 top-5 on ``--crops`` other
crops (seed ``--seed``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibration", type=int, default=200)
    ap.add_argument("--crops", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--work")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import tensorflow as tf
    from imagenet_int8 import build
    from PIL import Image

    from edgekit.compress.judge import fidelity, predict
    from edgekit.compress.quantizers.tflite import bias_correct
    from edgekit.photos import natural_crops

    work = Path(a.work or tempfile.mkdtemp(prefix="edgekit-bc-"))
    sm, crops = build(work, 500, 1)  # imagenet_int8.py's crops: its calibration half comes first
    cal = np.stack([np.asarray(Image.open(p), np.float32) / 255
                    for p in sorted(crops.glob("*.png"))[:a.calibration]])
    test = np.stack(natural_crops(a.crops, 224, a.seed)).astype(np.float32)
    f = work / "float.tflite"
    f.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(sm)).convert())
    ref = predict(f, test)

    def rep():
        for k in range(len(cal)):
            yield [cal[k:k + 1]]

    conv = tf.lite.TFLiteConverter.from_saved_model(str(sm))
    conv.optimizations, conv.representative_dataset = [tf.lite.Optimize.DEFAULT], rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=rep)
    rows = [("int8 per-channel", debugger.get_nondebug_quantized_model())]
    for passes in (1, 2):
        rows.append((f"+ bias correction, {passes} pass{'es' if passes > 1 else ''}",
                     bias_correct(debugger, cal, passes=passes)[0]))
    print(f"EfficientNet-Lite0 ImageNet, {len(cal)} calibration crops (seed 1), {len(test)} held-out crops "
          f"(seed {a.seed})")
    print(f"{'model':<34} {'agreement':>9} {'top-5':>6}")
    for k, (name, model) in enumerate(rows):
        (work / f"int8-{k}.tflite").write_bytes(model)
        fid = fidelity(ref, predict(work / f"int8-{k}.tflite", test))
        print(f"{name:<34} {fid['agreement']:>9.3f} {fid['top5']:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
