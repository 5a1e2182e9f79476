"""One artifact row and one report writer for every face of compression: ``edgekit compress`` on a Keras model,
a model edgekit did not train (ONNX, TFLite, SavedModel) and a recipe run all build :class:`ArtifactRow` rows
and write ``report.json`` and ``report.md`` through :func:`write_report`.

A row is typed: the artifact's path, format, precision, gate outcome, the judge's metric values with their
units (:data:`UNITS`; ``drop`` in the unit the judge names), size, latency and the remedy that passed. Its
JSON form (:meth:`ArtifactRow.to_dict`) has the keys report.json has always had, plus ``units``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fsutil import write_json_atomic, write_text_atomic
from ..tables import format_table, markdown_table

# The unit of every number a row can carry (``drop`` has the judge's own: ``ArtifactRow.drop_unit``).
UNITS = {"top1": "fraction", "agreement": "fraction of held-out inputs", "top5": "fraction of held-out inputs",
         "mean_abs_err": "probability", "map": "fraction", "recall": "fraction", "sparsity": "fraction",
         "size_bytes": "bytes", "gzip_bytes": "bytes", "size_kb": "KiB", "gzip_kb": "KiB", "p50_ms": "ms",
         "p99_ms": "ms", "size_x": "x float of the same format", "weight_kb": "KiB of stored weight tensors",
         "weights_x": "x the float weight payload of the same format", "gzip_x": "x float of the same format",
         "speedup": "x float of the same format"}


@dataclass
class ArtifactRow:
    """One artifact in a report."""

    artifact: str  # path relative to the report's folder
    format: str
    precision: str
    gate: str = "pass"  # "reference", "pass" or "FAIL <gates missed>"
    metrics: dict = field(default_factory=dict)  # judge numbers: top1, drop, agreement, top5, ... (UNITS)
    drop_unit: str | None = None  # "points of top-1", "points of top-1 agreement with float", ...
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    p50_ms: float | None = None  # 1 thread on this host
    p99_ms: float | None = None
    remedy: str | None = None  # the ladder rung that passed ("none": the plain attempt)
    sparsity: float | None = None
    params: int | None = None
    weights: dict | None = None  # weight dtypes in the file
    weight_bytes: int | None = None  # the stored weight tensors (kernels, biases, scales): the payload int8 shrinks
    gates: dict | None = None  # per gate: {"limit", "value", "passed"} (recipes and measured gates)
    size_x: float | None = None
    weights_x: float | None = None
    gzip_x: float | None = None
    speedup: float | None = None
    extra: dict = field(default_factory=dict)  # what one face adds (a recipe's path, asked, confusion, ...)

    @property
    def passed(self) -> bool:
        return self.gate in ("pass", "reference")

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"artifact": self.artifact, "format": self.format, "precision": self.precision}
        if self.sparsity is not None:
            d["sparsity"] = self.sparsity
        if self.params is not None:
            d["params"] = self.params
        d["size_kb"] = self.size_bytes / 1024 if self.size_bytes is not None else None
        if self.gzip_bytes is not None:
            d["gzip_kb"] = self.gzip_bytes / 1024
        d.update(self.metrics)
        d["p50_ms"] = self.p50_ms
        if self.p99_ms is not None:
            d["p99_ms"] = self.p99_ms
        d["gate"] = self.gate
        d["remedy"] = self.remedy
        if self.weights is not None:
            d["weights"] = self.weights
        if self.weight_bytes is not None:
            d["weight_kb"] = self.weight_bytes / 1024
        d["size_bytes"] = self.size_bytes
        if self.gzip_bytes is not None:
            d["gzip_bytes"] = self.gzip_bytes
        for k in ("size_x", "weights_x", "gzip_x", "speedup"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.gates is not None:
            d["gates"] = self.gates
            d["gates_passed"] = all(g["passed"] for g in self.gates.values())
        d.update(self.extra)
        d["units"] = {k: (self.drop_unit if k == "drop" else UNITS[k]) for k in d
                      if k in UNITS or (k == "drop" and self.drop_unit)}
        return d

    # Read like the dict rows it replaces (``row["top1"]``, ``row.get("speedup")``): the CLI, pickers and
    # scripts that read report rows keep working.
    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def get(self, key: str, default=None):
        return self.to_dict().get(key, default)


def relate_to_references(rows: list[ArtifactRow]) -> None:
    """Size x, gzip x and speed-up of every row against its format's float reference: the row whose gate is
    "reference", else (a recipe, which has no separate reference) its format's float32 row."""
    refs = {r.format: r for r in rows if r.gate == "reference"}
    for r in rows:
        if r.precision == "float32":
            refs.setdefault(r.format, r)
    for r in rows:
        ref = refs.get(r.format)
        if ref is None or not ref.size_bytes or r.size_bytes is None:
            continue
        r.size_x = r.size_bytes / ref.size_bytes
        if ref.weight_bytes and r.weight_bytes is not None:
            r.weights_x = r.weight_bytes / ref.weight_bytes
        if ref.gzip_bytes and r.gzip_bytes is not None:
            r.gzip_x = r.gzip_bytes / ref.gzip_bytes
        if r.p50_ms and ref.p50_ms:
            r.speedup = ref.p50_ms / r.p50_ms


@dataclass
class CompressReport:
    """What ``edgekit compress`` made, for a Keras model (``mode`` None) or a foreign one (``mode`` "accuracy"
    or "fidelity"): the rows, the steps' numbers, the misses, the notes and (with a profile) the pick."""

    out_dir: Path
    rows: list  # ArtifactRow
    steps: dict
    chosen: dict | None = None
    failures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    mode: str | None = None
    gate_rule: str | None = None  # the gate in words, for report.md (foreign models)

    def to_dict(self) -> dict:
        d = {"out_dir": str(self.out_dir)}
        if self.mode is not None:
            d["mode"] = self.mode
        d.update({"rows": [r.to_dict() for r in self.rows], "steps": self.steps})
        if self.mode is None:
            d["chosen"] = self.chosen
        d.update({"failures": self.failures, "notes": self.notes})
        return d


# The table columns of each face (the float metrics a judge reports differ; the rest is shared).
KERAS_COLUMNS = ["artifact", "format", "precision", "sparsity", "params", "size_kb", "gzip_kb", "size_x", "weights_x",
                 "gzip_x", "top1", "drop", "p50_ms", "speedup", "gate", "remedy"]
FOREIGN_COLUMNS = ["artifact", "format", "precision", "size_kb", "size_x", "agreement", "top5", "mean_abs_err",
                   "p50_ms", "speedup", "gate", "remedy"]
HEADERS = {"size_kb": "size KB", "gzip_kb": "gzip KB", "size_x": "size x", "weights_x": "weights x", "gzip_x": "gzip x", "drop": "drop pts",
           "p50_ms": "p50 ms", "speedup": "speed-up", "top5": "float top-1 in top-5", "mean_abs_err": "prob err"}


def _columns(report: CompressReport) -> list[str]:
    if report.mode is not None:
        return FOREIGN_COLUMNS
    key = next((k for k in report.steps.get("reference", {}) if k in UNITS), "top1")  # the judge's metric (map)
    return [key if c == "top1" else c for c in KERAS_COLUMNS]


def attempt_text(a: dict, mode: str | None = None) -> str:
    """One rung tried, in words: its error, its skip, or the judge's numbers."""
    if "skipped" in a:
        return f"skipped ({a['skipped']})"
    if "error" in a:
        return f"error {a['error'][:120]}"
    f = a.get("fidelity")
    if f is None:
        if "drop" in a:
            return f"drop {a['drop']:.2f}" + (f" ({a['why']})" if "why" in a else "")
        return a.get("why", "")
    s = f"agreement {f.get('agreement', float('nan')):.3f}, top-5 {f.get('top5', float('nan')):.3f}"
    if mode == "accuracy":
        s = f"top-1 {a['top1']:.4f}, drop {a['drop']:.2f} points; " + s
    return s + (f" ({a['why']})" if "why" in a else "")


def _failure_text(f: dict, mode: str | None) -> str:
    return "; ".join([f"{k} {g['value']:.4g} (limit {g['limit']:g})" for k, g in (f.get("gates") or {}).items()
                      if not g["passed"]]
                     + [f"{a['remedy']}: " + attempt_text(a, mode) for a in f["attempts"]])


def render(report: CompressReport) -> str:
    """The terminal table, notes, misses and pick."""
    lines = [format_table([r.to_dict() for r in report.rows], _columns(report), HEADERS)]
    lines += [f"note: {n}" for n in report.notes]
    for f in report.failures:
        lines.append(f"FAILED gate: {f['artifact']} " + (
            f"(missed: {', '.join(k for k, g in f['gates'].items() if not g['passed'])})" if f.get("gates") else
            f"(tried: {', '.join(a['remedy'] for a in f['attempts'])})"))
    if report.chosen:
        c = report.chosen
        lines.append(f"for {c['profile']}: {c['artifact']} ({c['format']} {c['precision']}, p50 "
                     f"{c['p50_ms'] if c['p50_ms'] is None else round(c['p50_ms'], 3)} ms here)")
        if c.get("note"):
            lines.append(f"note: {c['note']}")
    return "\n".join(lines)


def markdown(report: CompressReport) -> str:
    title = "# edgekit compress report" + ("" if report.mode is None else " (foreign model)")
    out = [title, "", markdown_table([r.to_dict() for r in report.rows], _columns(report), HEADERS), ""]
    ref = report.steps.get("reference", {})
    if report.mode is not None:
        s = report.steps
        out += [f"Gate: {report.mode}, {report.gate_rule}, on {s['held_out']} held-out images against the float "
                f"model `{ref['model']}`; {s['calibration']} images calibrate. Agreement and top-5 are against the "
                "float model's top-1; prob err is the mean absolute difference of the softmax probabilities; size x "
                "and speed-up against the float reference of the same format; p50 is 1 thread on this host.", ""]
    elif ref:
        key = next((k for k in ref if k in UNITS), "top1")
        out += [f"Float reference: `{ref.get('model')}`, {ref.get('metric', 'top-1')} {ref.get(key, 0):.4f} on the "
                f"{ref.get('split')} split. Drop is in {ref.get('unit', 'points of top-1')} against it; size/gzip x and "
                "speed-up are against the float reference artifact of the same format; p50 is 1 thread on this host.",
                ""]
    d = report.steps.get("distill")
    if d:
        out += [f"Distillation (T={d['temperature']}, alpha={d['alpha']}, {d['epochs']} epochs, seed "
                f"{d['seed']}): distilled student {d['distilled_top1']:.4f}, student alone "
                f"{d.get('alone_top1', float('nan')):.4f}, teacher {d['teacher_top1']:.4f}.", ""]
    out += [f"- {n}" for n in report.notes]
    out += [f"- **Gate failed** for `{f['artifact']}`: {_failure_text(f, report.mode)}" for f in report.failures]
    if report.chosen:
        c = report.chosen
        out.append(f"- For device `{c['profile']}`: **{c['artifact']}** ({c['why']})."
                   + (f" {c['note']}" if c.get("note") else ""))
    return "\n".join(out) + "\n"


def write_report(out_dir: Path, data: dict, md: str | None = None, html: str | None = None) -> dict[str, Path]:
    """The one writer: ``report.json`` (``data``), and ``report.md``/``report.html`` when given, each written
    under a temporary name and renamed, so a reader never sees half a report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    if md is not None:
        paths["md"] = write_text_atomic(out_dir / "report.md", md)
    if html is not None:
        paths["html"] = write_text_atomic(out_dir / "report.html", html)
    paths["json"] = write_json_atomic(out_dir / "report.json", data)
    return paths


def write_compress_report(report: CompressReport) -> None:
    """report.json and report.md of ``edgekit compress`` (a Keras or a foreign model)."""
    write_report(report.out_dir, report.to_dict(), markdown(report))
