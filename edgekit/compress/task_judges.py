"""The judges of tasks beyond classification, on the one ladder (:mod:`edgekit.compress.judge`):

* :class:`MapJudge` — detectors: COCO mAP@[.5:.95] (F1 for a centroid model) on held-out scenes, every format
  through the device runtime and the one box post-processing (:mod:`edgekit.runtime.boxes`). Registered for
  datasets whose ``task`` is ``"detection"``.
* :class:`StreamRecallJudge` — keyword spotters judged as an always-on device lives with them: each artifact is
  calibrated on its own (int8 moves the posteriors) for a false-alarm rate on the calibration streams, then its
  recall is measured on held-out streams at that operating point; an artifact that exceeds the false-alarm
  target there is vetoed. Not the default judge of keyword datasets (a stream judge needs an hour of negative
  audio per climb): pass it to the ladder, or register it, where streams are at hand.

Importing this module registers the detection judge; the quantize stage (``stages.quantize_gated``, both
faces) imports it before it asks ``judge_for``.
"""

from __future__ import annotations

from pathlib import Path

from .judge import JUDGES, EPS, Judge, Score


class MapJudge(Judge):
    """mAP@[.5:.95] (box detectors) or centroid F1 (FOMO) on ``ds[split]``; drop in points of that metric.

    Which of the two is fixed by the float model in :meth:`reference` (its post-processing kind), before any
    attempt is scored, so every attempt of a climb carries the same unit; a candidate of another kind is refused.
    """

    key = "map"
    details_key = "detection"
    METRICS = {"centernet": ("mAP@[.5:.95]", "points of mAP@[.5:.95]"),
               "fomo": ("centroid F1", "points of centroid F1")}

    def __init__(self, ds, split: str = "test", limit: int | None = None, meta=None):
        self.ds, self.split, self.limit = ds, split, limit
        self.meta = meta  # the float model's metadata, for a keras.Model in memory (a file carries its own)
        self.kind: str | None = None  # set by reference()
        self.unit = self.METRICS["centernet"][1]  # a box detector's until reference() reads the float model

    def _evaluate(self, model) -> tuple[str, dict, int]:
        """(post-processing kind, score_outputs' numbers, images) of ``model`` on the judge's split."""
        from ..evaluate_detect import DetectorRunner, score_outputs

        runner = DetectorRunner(model, meta=None if isinstance(model, (str, Path)) else self.meta)
        try:
            x, recs = self.ds.images(self.split, runner.size, self.limit)
            post = runner.meta.extra["postprocess"]
            r = score_outputs(runner.run(x), recs, self.ds.labels, post)
        finally:
            runner.close()
        return post.get("kind", "centernet"), r, len(recs)

    @staticmethod
    def _score(kind: str, r: dict, n: int) -> Score:
        if kind == "centernet":
            return Score(float(r["map"]), "mAP@[.5:.95]", {"map50": r.get("map50"), "images": n})
        return Score(float(r["f1"]), "centroid F1", {"precision": r.get("precision"), "recall": r.get("recall"),
                                                     "images": n})

    def reference(self, float_artifact) -> Score:
        kind, r, n = self._evaluate(float_artifact)
        self.kind = kind
        self.unit = self.METRICS["centernet" if kind == "centernet" else "fomo"][1]
        return self._score(kind, r, n)

    def score(self, artifact) -> Score:
        if self.kind is None:
            raise RuntimeError("MapJudge.score() before reference(): the float model fixes the metric and its unit")
        kind, r, n = self._evaluate(artifact)
        if kind != self.kind:
            from ..errors import ModelError

            raise ModelError(f"{Path(str(artifact)).name} is a {kind} detector but the float reference is a "
                             f"{self.kind} one: their scores don't compare")
        return self._score(kind, r, n)


class StreamRecallJudge(Judge):
    """Recall on ``test`` streams at the operating point each artifact gets on ``calibration`` streams for
    ``target_fa_per_hour``; drop in points of recall; veto above ``target_fa_per_hour + fa_slack`` on ``test``."""

    key = "recall"
    details_key = "streams"

    def __init__(self, calibration, test, target_fa_per_hour: float = 1.0, fa_slack: float = 1.0):
        self.calibration, self.test = calibration, test
        self.target, self.fa_slack = float(target_fa_per_hour), float(fa_slack)
        self.unit = f"points of recall at {self.target:g} FA/h"

    def _measure(self, path) -> Score:
        from ..apps.streams import stream_recall_at_fa

        recall, fa = stream_recall_at_fa(path, self.test, self.target, calibration_streams=self.calibration)
        return Score(recall, "recall", {"fa_per_hour": fa, "target_fa_per_hour": self.target})

    def reference(self, float_artifact) -> Score:
        return self._measure(float_artifact)

    def score(self, artifact) -> Score:
        return self._measure(artifact)

    def veto(self, score: Score) -> str | None:
        fa = score.details.get("fa_per_hour")
        if fa is not None and fa > self.target + self.fa_slack + EPS:
            return f"{fa:g} false alarms an hour on the held-out streams (target {self.target:g} + {self.fa_slack:g})"
        return None


JUDGES.setdefault("detection", lambda ds, split: MapJudge(ds, split))
