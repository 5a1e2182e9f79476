"""Judges: whether a compressed artifact is still good enough, in explicit units.

The remedy ladder (:func:`edgekit.compress.ladder.climb`) asks one judge about every rung it tries; the
judge is the only part that knows the task. ``edgekit compress``, recipes and foreign models all climb the
same ladder: a new task is a new judge, not a new loop.

Adding a judge (detection mAP, keyword recall at a false-alarm rate, ...) is one class with:

``unit``
    What ``drop`` and ``max_drop`` are counted in, for reports and messages: ``"points of top-1"``,
    ``"points of mAP@[.5:.95]"``, ``"points of recall at 1 FA/h"``. A point is 1/100 of the metric.
``key``
    The report column of the score (``"top1"``, ``"map"``, ``"recall"``).
``reference(float_artifact) -> Score``
    The bar: the float model (a keras.Model or a model file) on the judge's held-out data. Called once
    before the climb; a judge that needs an operating point (the keyword threshold that gives N false alarms
    an hour on the float model) fixes it here and keeps it for ``score``.
``score(artifact_path) -> Score``
    The candidate on the same data (through the device runtime: ``edgekit.runtime.load``).
``drop(ref, score) -> float``
    How much worse, in ``unit`` (> 0: worse than float).
``passes(drop, max_drop) -> bool``
    The gate. ``veto(score) -> str | None`` (default: none) adds a floor that is not a drop (fidelity's
    "float top-1 inside the int8 top-5" rate); it returns the reason it fails.

Subclass :class:`Judge` for the defaults. Two sketches of the judges being built next::

    class MapJudge(Judge):            # detection
        unit, key = "points of mAP@[.5:.95]", "map"
        def __init__(self, images, boxes): ...
        def reference(self, float_artifact): return Score(self._map(float_artifact), "mAP@[.5:.95]")
        def score(self, path): return Score(self._map(path), "mAP@[.5:.95]")   # runtime + box decode + NMS

    class StreamRecallJudge(Judge):   # keyword streams
        unit, key = "points of recall at 1 FA/h", "recall"
        def reference(self, float_artifact):  # threshold for 1 FA/h on the negative streams, then recall
            self.threshold = ...; return Score(recall, "recall")
        def score(self, path): return Score(self._recall(path, self.threshold), "recall")

``drop`` and ``passes`` come from :class:`Judge` (points of the score: ``100 * (ref - score)``, gate
``drop <= max_drop``). To put it on the ladder of ``edgekit compress`` and recipe quantize steps, register a
factory for its dataset's ``task`` (the files a new judge touches: its module and this one line)::

    JUDGES["detection"] = lambda ds, split: MapJudge(*ds.split(split))

:func:`judge_for` then picks it; a task without an entry is judged on top-1. Its bar there is its own
``reference()`` of the float artifact in the same format (top-1's is the model before compression).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


def top1_of(model_or_path, ds, split: str) -> float:
    """Top-1 on ``ds[split]`` through edgekit.evaluate (runtime sessions for exported files)."""
    from ..evaluate import evaluate

    return float(evaluate(model_or_path, ds, split=split)["top1"])


# A rounding hair must not fail an artifact that matches the reference exactly.
EPS = 1e-9


@dataclass(frozen=True)
class Score:
    value: float  # the metric as a fraction (0.93 top-1), not in points
    unit: str  # the metric's name: "top-1", "agreement", "mAP@[.5:.95]"
    details: dict = field(default_factory=dict)  # more numbers for the report (fidelity: agreement, top-5, ...)


# --- the numbers the output judges read ----------------------------------------------------------
def fidelity(reference: np.ndarray, got: np.ndarray) -> dict:
    """Top-1 agreement, float top-1 inside the top-5, and probability error of ``got`` against ``reference``
    (both read as probabilities by the device side's one rule: an int8 softmax is not softmaxed again)."""
    from ..serve.preprocess import as_probabilities

    r, g = as_probabilities(reference)[0], as_probabilities(got)[0]
    ref_top = r.argmax(1)
    k = min(5, g.shape[1])
    top5 = np.argsort(-g, axis=1)[:, :k]
    return {"agreement": float((g.argmax(1) == ref_top).mean()), "top5": float((top5 == ref_top[:, None]).any(1).mean()),
            "mean_abs_err": float(np.abs(g - r).mean()), "max_abs_err": float(np.abs(g - r).max()),
            "samples": int(len(r))}


def predict(path: Path, x: np.ndarray, batch: int = 64) -> np.ndarray:
    from .. import runtime

    with runtime.load(path) as s:
        fixed = s.inputs[0].shape[0]
        step = fixed if fixed else batch
        return np.concatenate([s.predict(x[i:i + step]) for i in range(0, len(x), step)])


class Judge:
    """The defaults: drop in points of the score, gate ``drop <= max_drop``, no veto."""

    unit = "points"
    key = "score"
    details_key: str | None = None  # where ``Score.details`` goes in an attempt's dict

    def reference(self, float_artifact) -> Score:  # pragma: no cover - the protocol
        raise NotImplementedError

    def score(self, artifact: Path) -> Score:  # pragma: no cover - the protocol
        raise NotImplementedError

    def drop(self, ref: Score, score: Score) -> float:
        return 100.0 * (ref.value - score.value)

    def passes(self, drop: float, max_drop: float) -> bool:
        return bool(drop <= max_drop + EPS)

    def veto(self, score: Score) -> str | None:
        return None


class AccuracyJudge(Judge):
    """Top-1 on labelled held-out data: ``top1(model_or_path) -> float`` (edgekit's ``evaluate`` for a dataset
    of its own: :meth:`on_dataset`; predictions on arrays for a foreign model: :class:`ArrayAccuracyJudge`)."""

    unit = "points of top-1"
    key = "top1"

    def __init__(self, top1: Callable[[Any], float]):
        self._top1 = top1

    @classmethod
    def on_dataset(cls, ds, split: str) -> "AccuracyJudge":
        return cls(lambda m: top1_of(m, ds, split))

    def reference(self, float_artifact) -> Score:
        return Score(float(self._top1(float_artifact)), "top-1")

    def score(self, artifact) -> Score:
        return Score(float(self._top1(artifact)), "top-1")


class _OutputsJudge(Judge):
    """Judges that compare a candidate's outputs on ``x`` with the float model's (kept by ``reference``)."""

    details_key = "fidelity"

    def __init__(self, x: np.ndarray, predict: Callable[[Path, np.ndarray], np.ndarray] | None = None):
        self.x = x
        self._predict = predict
        self.ref_out: np.ndarray | None = None

    def predict(self, path) -> np.ndarray:
        if self._predict is not None:
            return self._predict(path, self.x)
        return predict(Path(path), self.x)

    def outputs_reference(self, float_artifact) -> np.ndarray:
        self.ref_out = self.predict(float_artifact)
        return self.ref_out

    def fidelity_of(self, out: np.ndarray) -> dict:
        return fidelity(self.ref_out, out)


class ArrayAccuracyJudge(_OutputsJudge):
    """Top-1 against labels ``y`` of the arrays ``x`` (a foreign model's labelled image folder); each score also
    carries its fidelity to the float model for the report."""

    unit = "points of top-1"
    key = "top1"

    def __init__(self, x: np.ndarray, y: np.ndarray, predict=None):
        super().__init__(x, predict)
        self.y = np.asarray(y)

    def _top1(self, out) -> float:
        return float((np.asarray(out).reshape(len(self.y), -1).argmax(1) == self.y).mean())

    def reference(self, float_artifact) -> Score:
        return Score(self._top1(self.outputs_reference(float_artifact)), "top-1")

    def score(self, artifact) -> Score:
        out = self.predict(artifact)
        return Score(self._top1(out), "top-1", self.fidelity_of(out))


class FidelityJudge(_OutputsJudge):
    """No labels: top-1 agreement with the float model on ``x`` (the float model agrees with itself: 1.0), and
    a floor on how often the float top-1 is inside the candidate's top-5 (``veto``)."""

    unit = "points of top-1 agreement with float"
    key = "agreement"

    def __init__(self, x: np.ndarray, min_agreement: float, min_top5: float, predict=None):
        super().__init__(x, predict)
        self.min_agreement, self.min_top5 = min_agreement, min_top5

    @property
    def max_drop(self) -> float:
        """``min_agreement`` as the drop it allows, in this judge's points."""
        return 100.0 * (1.0 - self.min_agreement)

    def reference(self, float_artifact) -> Score:
        self.outputs_reference(float_artifact)
        return Score(1.0, "agreement")

    def score(self, artifact) -> Score:
        f = self.fidelity_of(self.predict(artifact))
        return Score(f["agreement"], "agreement", f)

    def veto(self, score: Score) -> str | None:
        top5 = score.details.get("top5")
        if top5 is not None and top5 < self.min_top5 - EPS:
            return f"float top-1 inside the top-5 on {top5:.3f} of the images (min {self.min_top5:g})"
        return None


# task -> (dataset, split) -> Judge: how the ladder of edgekit compress and recipes judges a dataset's task.
JUDGES: dict[str, Callable[[Any, str], Judge]] = {}


def judge_for(ds, split: str) -> Judge:
    """The judge registered for ``ds.task`` (:data:`JUDGES`), else top-1 accuracy on ``ds[split]``."""
    make = JUDGES.get(getattr(ds, "task", None) or "")
    return make(ds, split) if make is not None else AccuracyJudge.on_dataset(ds, split)
