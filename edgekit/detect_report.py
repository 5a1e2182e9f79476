"""A detection recipe's evaluation and figures: every artifact's mAP@[.5:.95] (centroid F1 for a FOMO model) on
the held-out split through the device runtime and the one box decoding, the precision-recall curve at IoU 0.5
(pycocotools' interpolated precision) per artifact, and a grid of held-out images with the boxes the shipped
int8 artifact draws beside the ground truth. Build side (matplotlib); the run report embeds the figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .run_report import save_figure

SAMPLES = 8  # held-out images in the grid


def _score(path, x, recs, labels, pr_curve: bool = True) -> tuple[dict, np.ndarray, object]:
    from .evaluate_detect import DetectorRunner, score_outputs

    runner = DetectorRunner(path)
    try:
        out = runner.run(x)
        post = runner.meta.extra["postprocess"]
        return score_outputs(out, recs, labels, post, pr_curve), out, runner.postprocess()
    finally:
        runner.close()


def evaluate_step(run, ds, current: dict, artifacts: list[dict], folder: Path) -> dict:
    """The recipe's evaluate step for a detector: the Keras model and every artifact on ``test`` (val without
    one), each row as the report reads it (``map``, ``map50``, per-class AP), and the two figures."""
    from .artifact import read_meta

    keras_path = run.out / current["model"]
    meta = read_meta(keras_path)
    size = int(meta.preprocessing["size"][0])
    split = "test" if "test" in ds.splits else "val"
    x, recs = ds.images(split, size)
    kind = meta.extra["postprocess"].get("kind", "centernet")
    boxes = kind == "centernet"
    value = (lambda r: r["map"]) if boxes else (lambda r: r["f1"])
    ref, _, _ = _score(keras_path, x, recs, ds.labels)
    results, curves = {}, {"keras float32": ref.get("pr50")}
    # The grid shows what ships: the first compressed artifact (else the last float one).
    pick = next((a for a in artifacts if a["precision"] != "float32"), artifacts[-1] if artifacts else None)
    shown = None
    for a in artifacts:
        res, out, post = _score(run.out / a["path"], x, recs, ds.labels)
        results[a["path"]] = {"map": value(res), "per_class": res["per_class"],
                              **({"map50": res["map50"]} if boxes else {"precision": res["precision"],
                                                                        "recall": res["recall"]})}
        curves[f"{a['format']} {a['precision']}"] = res.get("pr50")
        if a is pick:
            shown = (a, post(out[:SAMPLES]))
    figs = {}
    if boxes:
        figs["pr_curve"] = str(plot_pr(curves, folder / "pr_curve.png", split).relative_to(run.out))
    if shown is not None:
        a, dets = shown
        figs["samples"] = str(plot_samples(x[:SAMPLES], recs[:SAMPLES], dets, ds.labels, folder / "samples.png",
                                           f"{a['format']} {a['precision']} on held-out {split} images (boxes: "
                                           "prediction red, ground truth green)").relative_to(run.out))
        figs["samples_artifact"] = a["path"]
    return {"metric": "mAP@[.5:.95]" if boxes else "centroid F1", "split": split, "images": len(recs),
            "reference_map": value(ref), "reference_map50": ref.get("map50"), "reference_per_class": ref["per_class"],
            "results": results, "figures": figs, "pr50": {k: v["all"] for k, v in curves.items() if v}}


def plot_pr(curves: dict, path: Path, split: str) -> Path:
    """Precision against recall at IoU 0.5, all classes averaged, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        if c:
            ax.plot(c["recall"], c["all"], label=name, lw=1.2)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (interpolated)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision-recall at IoU 0.5 ({split} split, all classes)")
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, ax, path)


def plot_samples(images: np.ndarray, recs, dets, labels, path: Path, title: str, cols: int = 4) -> Path:
    """Held-out images with ground truth (green) and predicted boxes or centres (red, label and score)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        h, w = images[i].shape[:2]
        ax.imshow(images[i])
        for b in recs[i].boxes:
            ax.add_patch(Rectangle((b[0] * w, b[1] * h), (b[2] - b[0]) * w, (b[3] - b[1]) * h, fill=False,
                                   edgecolor="lime", lw=1, ls="--"))
        d = dets[i]
        for b, s, c in zip(d.boxes, d.scores, d.classes):
            if b[2] > b[0]:
                ax.add_patch(Rectangle((b[0] * w, b[1] * h), (b[2] - b[0]) * w, (b[3] - b[1]) * h, fill=False,
                                       edgecolor="red", lw=1.2))
            else:  # a centroid model's centre
                ax.plot(b[0] * w, b[1] * h, "r+", ms=8)
            ax.text(b[0] * w, b[1] * h, f"{labels[int(c)]} {s:.2f}", color="white", fontsize=6,
                    bbox={"facecolor": "red", "alpha": 0.6, "pad": 0.5, "lw": 0})
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, None, path, dpi=100)
