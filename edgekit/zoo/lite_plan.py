"""EfficientNet-Lite's architecture as data: the variants' scaling and the block plan (no Keras), shared by
the Keras builder (:mod:`edgekit.zoo.efficientnet_lite`) and the weights converter (:mod:`edgekit.pretrained`)."""

from __future__ import annotations

import math

# variant -> (width coefficient, depth coefficient, native resolution, dropout)
VARIANTS = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3),
    "lite4": (1.4, 1.8, 300, 0.3),
}
# (repeats, kernel, stride, expand ratio, input filters, output filters): efficientnet_lite_builder.py
BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def round_filters(filters: int, width: float) -> int:
    if width == 1.0:
        return filters
    f = filters * width
    new = max(8, int(f + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * f else new)


def block_plan(variant: str) -> list[tuple]:
    """Per block: (kernel, stride, expand, in filters, out filters), with Lite's unscaled first/last stage."""
    width, depth, _, _ = VARIANTS[variant]
    plan = []
    for i, (r, k, s, e, fin, fout) in enumerate(BLOCKS):
        fin, fout = round_filters(fin, width), round_filters(fout, width)
        if i == 0:
            fin = 32  # the fixed stem
        reps = r if i in (0, len(BLOCKS) - 1) else int(math.ceil(depth * r))
        for j in range(reps):
            plan.append((k, s if j == 0 else 1, e, fin if j == 0 else fout, fout))
    return plan
