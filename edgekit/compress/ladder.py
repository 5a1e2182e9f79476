"""The remedy ladder: one gated loop for every source, format, precision and task.

A plan is the list of rungs (:func:`edgekit.compress.quantize.rungs`: the plain attempt, then each remedy
on top of the ones before); ``make`` builds one rung's artifact in a staging folder; a judge
(:mod:`edgekit.compress.judge`) scores it against the float reference. The first rung that passes is kept
(staged; the caller promotes it), every miss is deleted, and every try is an :class:`Attempt`. A passing rung
that kept layers in float is then offered ``shrink``'s smaller variants of it (their weights int8, activations
still float: :func:`edgekit.compress.quantizers.weight_only_variants`); the first the judge passes replaces it.
The last attempt is always the kept artifact's.
``edgekit compress`` (Keras models), recipe steps and foreign models (ONNX, TFLite, SavedModel) all climb
here; what differs between them is only the plan, ``make`` and the judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..errors import ModelError, first_line
from .judge import Judge, Score


@dataclass
class Rung:
    remedy: str  # "none" for the plain attempt
    config: object  # the QuantizeConfig of this rung
    precision: str  # what it makes ("int16x8" on that rung of an int8 ladder)


def engine_of(plan: list[Rung], i: int) -> str:
    """The quantizer of rung ``i`` (QuantizeJob.engine): "nncf", NNCF's in place of ONNX Runtime's, from the plan's
    rung of that name on, cumulative like every remedy, but where it can't go (QAT's converter takes its trained
    ranges, NNCF has no int16 activations, accuracy control is NNCF's already); "default" elsewhere."""
    start = next((k for k, r in enumerate(plan) if r.remedy == "nncf"), len(plan))
    return "nncf" if i >= start and plan[i].remedy not in ("qat", "int16x8", "accuracy-control") else "default"


@dataclass
class Attempt:
    """One rung tried: what it was, how the judge scored it, and whether it passed."""

    remedy: str
    precision: str
    passed: bool
    key: str = "score"  # the judge's name for ``value`` (top1, agreement, map, ...)
    value: float | None = None
    unit: str | None = None  # the unit of ``drop``
    drop: float | None = None
    config: dict = field(default_factory=dict)  # calibration_samples, per_channel, ... of this rung
    details: dict = field(default_factory=dict)
    details_key: str | None = None
    error: str | None = None  # it was not made, or does not run
    why: str | None = None  # the reason a made artifact fails beyond its drop (a judge's veto, a check)
    extra: dict = field(default_factory=dict)  # what a caller's check adds (reverted_fraction, size_x)

    def to_dict(self) -> dict:
        """The JSON form in reports (the same keys report.json has always had)."""
        d = {"remedy": self.remedy, "precision": self.precision, **self.config}
        if self.error is not None:
            d["error"] = self.error
        if self.value is not None:
            d[self.key] = self.value
            d["drop"] = self.drop
        if self.details_key and self.details:
            d[self.details_key] = dict(self.details)
        d.update(self.extra)
        if self.why is not None:
            d["why"] = self.why
        d["passed"] = self.passed
        return d


def config_fields(c) -> dict:
    return {"calibration_samples": c.calibration_samples, "per_channel": c.per_channel,
            "float_sensitive": c.float_sensitive, "mixed_precision": c.mixed_precision}


def climb(plan: list[Rung], make: Callable[[int, Rung], Path], judge: Judge, ref: Score, max_drop: float,
          say: Callable[[str], None], label: str, check: Callable[[Rung, Path, Attempt], None] | None = None,
          discard: Callable[[Path], None] | None = None,
          shrink: Callable[[Rung, Path], Iterator[tuple[str, Path]]] | None = None) -> tuple[Path | None, list[Attempt]]:
    """Try the rungs of ``plan`` in order; return (the staged artifact of the first that passes, or None; every
    attempt). ``make(i, rung)`` builds rung ``i`` (a ModelError is a failed attempt, and the climb goes on);
    ``check`` may fail a made artifact for a reason the judge doesn't see (it sets ``passed``/``why``)."""
    if discard is None:
        from .gate import discard
    attempts: list[Attempt] = []
    for i, rung in enumerate(plan):
        say(f"{label} {rung.precision}" + (f" (rung: {rung.remedy})" if rung.remedy != "none" else "") + " ...")
        base = _base(rung, rung.remedy, judge)
        try:
            path = make(i, rung)
        except ModelError as e:
            attempts.append(Attempt(passed=False, error=str(e)[:300], **base))
            continue
        a = _judged(judge, ref, max_drop, path, base, check, rung)
        attempts.append(a)
        if a.error is not None:
            say(f"{label} {rung.precision}: does not run ({_why_not(a)}) -> miss")
            discard(path)
            continue
        say(f"{label} {rung.precision}: {_scored(a, judge)} -> " + ("pass" if a.passed else "miss"))
        if a.passed:
            if shrink is not None:
                path = _smaller(rung, path, shrink, judge, ref, max_drop, say, label, check, discard, attempts)
            return path, attempts
        discard(path)
    return None, attempts


def _base(rung: Rung, remedy: str, judge: Judge) -> dict:
    return dict(remedy=remedy, precision=rung.precision, key=judge.key, unit=judge.unit,
                config=config_fields(rung.config), details_key=judge.details_key)


def _why_not(a: Attempt) -> str:
    return (a.error or "").split("runtime: ", 1)[-1][:120]


def _scored(a: Attempt, judge: Judge) -> str:
    return f"{judge.key} {a.value:.4f}, drop {a.drop:.2f} {judge.unit}" + (f" ({a.why})" if a.why else "")


def _judged(judge, ref, max_drop, path, base: dict, check, rung) -> Attempt:
    """One made artifact scored: an Attempt that passed or not, or one with ``error`` when it does not run."""
    try:
        s = judge.score(path)
    except Exception as e:  # noqa: BLE001 - converted, yet its runtime refuses it (an op with no int16 kernel)
        return Attempt(passed=False, error=f"converted, but does not run in the runtime: {first_line(e)[:300]}",
                       **base)
    drop = judge.drop(ref, s)
    why = judge.veto(s)
    a = Attempt(passed=judge.passes(drop, max_drop) and why is None, value=s.value, drop=drop,
                details=dict(s.details), why=why, **base)
    if check is not None:
        check(rung, path, a)
    return a


def _smaller(rung, path, shrink, judge, ref, max_drop, say, label, check, discard, attempts) -> Path:
    """Keep float only what must be: the variants ``shrink(rung, path)`` yields of a passing artifact are judged
    in turn; the first that passes replaces it. A variant that misses is recorded before the kept attempt."""
    for tag, cand in shrink(rung, path):
        remedy = f"{rung.remedy}+{tag}"
        say(f"{label} {rung.precision} (rung: {remedy}) ...")
        a = _judged(judge, ref, max_drop, cand, _base(rung, remedy, judge), check, rung)
        say(f"{label} {rung.precision}: " + (f"does not run ({_why_not(a)})" if a.error is not None else
                                             _scored(a, judge))
            + " -> " + ("smaller, kept" if a.passed else "miss, float weights stay"))
        if a.passed:
            attempts.append(a)
            discard(path)
            return cand
        attempts.insert(len(attempts) - 1, a)
        discard(cand)
    return path
