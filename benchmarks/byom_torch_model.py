"""A PyTorch-exported classifier for benchmarks/byom.py, made offline: a MobileNetV3-style network
(hard-swish, squeeze-and-excitation, depthwise-separable inverted residuals, BatchNorm) trained in PyTorch
on crops of scikit-learn's two sample photos (photo x grid-cell classes), exported with ``torch.onnx.export``.

Run it in an environment with torch (edgekit does not depend on it), then hand the ONNX to byom.py:

  python benchmarks/byom_torch_model.py --out /tmp/byom/torch_mnv3.onnx     # needs torch, onnx, sklearn, pillow
  python benchmarks/byom.py --work /tmp/byom/t --model /tmp/byom/torch_mnv3.onnx --labels /tmp/byom/torch_mnv3.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compress"))


def build(num_classes: int, width: float = 1.0):
    import torch
    from torch import nn

    def c(n):
        return max(8, int(round(n * width / 8)) * 8)

    class SE(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(ch, max(8, ch // 4), 1), nn.Conv2d(max(8, ch // 4), ch, 1)

        def forward(self, x):
            s = x.mean((2, 3), keepdim=True)
            return x * nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(s))))

    class Block(nn.Module):
        def __init__(self, cin, exp, cout, k, stride, se, hs):
            super().__init__()
            act = nn.Hardswish if hs else nn.ReLU
            layers = [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), act()] if exp != cin else []
            layers += [nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), act()]
            if se:
                layers.append(SE(exp))
            layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    # MobileNetV3-Small's table (kernel, expansion, out, SE, hard-swish, stride).
    cfg = [(3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
           (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
           (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
           (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1)]
    layers = [nn.Conv2d(3, c(16), 3, 2, 1, bias=False), nn.BatchNorm2d(c(16)), nn.Hardswish()]
    cin = c(16)
    for k, e, o, se, hs, s in cfg:
        layers.append(Block(cin, c(e), c(o), k, s, se, hs))
        cin = c(o)
    layers += [nn.Conv2d(cin, c(576), 1, bias=False), nn.BatchNorm2d(c(576)), nn.Hardswish(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c(576), 1024), nn.Hardswish(),
               nn.Linear(1024, num_classes)]
    torch.manual_seed(0)
    return nn.Sequential(*layers)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--grid", default="2x4")
    ap.add_argument("--images", type=int, default=1600)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    import torch

    from byom_models import MEAN, STD, grid_classes, sample_crops

    torch.set_num_threads(a.threads)
    grid = tuple(int(v) for v in a.grid.lower().split("x"))
    classes = grid_classes(*grid)
    px, py = sample_crops(a.images, a.size, seed=0, grid=grid)
    x = torch.from_numpy(((px.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(py)
    model = build(len(classes))
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    steps = a.epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    t0 = time.time()
    for ep in range(a.epochs):
        model.train()
        perm = torch.randperm(len(x))
        tot = hit = 0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            out = model(x[idx])  # no mirroring: left and right are different classes
            loss = torch.nn.functional.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += len(idx)
            hit += int((out.argmax(1) == y[idx]).sum())
        print(f"epoch {ep + 1}/{a.epochs}: loss {loss.item():.3f}, train acc {hit / tot:.3f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (x[:1],), str(a.out), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    a.out.with_suffix(".txt").write_text("\n".join(classes) + "\n")
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {a.out} ({n:,} parameters, {len(classes)} classes, torch {torch.__version__}) and "
          f"{a.out.with_suffix('.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
