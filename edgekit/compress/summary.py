"""The compression report: every artifact with format, precision, sparsity, parameters, size, gzip
size, top-1, drop, p50 latency here and speed-up against the float reference of the same format.
Printed, and written as ``report.json`` and ``report.md``."""

from __future__ import annotations

from pathlib import Path

from ..fsutil import write_json_atomic, write_text_atomic
from ..tables import format_table, markdown_table
from .gate import relate_to_references

COLUMNS = ["artifact", "format", "precision", "sparsity", "params", "size_kb", "gzip_kb", "size_x", "gzip_x",
           "top1", "drop", "p50_ms", "speedup", "gate", "remedy"]
HEADERS = {"size_kb": "size KB", "gzip_kb": "gzip KB", "size_x": "size x", "gzip_x": "gzip x",
           "drop": "drop pts", "p50_ms": "p50 ms", "speedup": "speed-up"}


def build_rows(entries, ds, split, ref_top1, bench_runs, out_dir: Path, say=lambda s: None) -> list[dict]:
    from .measure import measure

    rows = []
    for kind, fmt, path, params, extra in entries:
        say(f"measuring {Path(path).name} ...")
        m = measure(Path(path), ds, split, bench_runs)
        row = {"artifact": str(Path(path).relative_to(out_dir)), "format": fmt,
               "precision": extra.get("precision", "float32"), "sparsity": round(m["sparsity"], 4),
               "params": params, "size_kb": m["size"] / 1024, "gzip_kb": m["gzip"] / 1024,
               "top1": m["top1"], "drop": 100.0 * (ref_top1 - m["top1"]), "p50_ms": m["p50_ms"],
               "gate": "reference" if kind == "reference" else "pass", "remedy": extra.get("remedy"),
               "weights": m["weights"], "size_bytes": m["size"], "gzip_bytes": m["gzip"]}
        rows.append(row)
    relate_to_references(rows)
    return rows


def render(result) -> str:
    lines = [format_table(result.rows, COLUMNS, HEADERS)]
    lines += [f"note: {n}" for n in result.notes]
    for f in result.failures:
        lines.append(f"FAILED gate: {f['artifact']} " + (f"(missed: {', '.join(k for k, g in f['gates'].items() if not g['passed'])})"
                                                         if f.get("gates") else
                                                         f"(tried: {', '.join(a['remedy'] for a in f['attempts'])})"))
    if result.chosen:
        c = result.chosen
        lines.append(f"for {c['profile']}: {c['artifact']} ({c['format']} {c['precision']}, p50 "
                     f"{c['p50_ms'] if c['p50_ms'] is None else round(c['p50_ms'], 3)} ms here)")
        if c.get("note"):
            lines.append(f"note: {c['note']}")
    return "\n".join(lines)


def markdown(result) -> str:
    out = ["# edgekit compress report", "", markdown_table(result.rows, COLUMNS, HEADERS), ""]
    ref = result.steps.get("reference", {})
    if ref:
        out.append(f"Float reference: `{ref.get('model')}`, top-1 {ref.get('top1', 0):.4f} on the "
                   f"{ref.get('split')} split. Drop is in top-1 points against it; size/gzip x and speed-up are "
                   "against the float reference artifact of the same format; p50 is 1 thread on this host.")
        out.append("")
    d = result.steps.get("distill")
    if d:
        out.append(f"Distillation (T={d['temperature']}, alpha={d['alpha']}, {d['epochs']} epochs, seed "
                   f"{d['seed']}): distilled student {d['distilled_top1']:.4f}, student alone "
                   f"{d.get('alone_top1', float('nan')):.4f}, teacher {d['teacher_top1']:.4f}.")
        out.append("")
    for n in result.notes:
        out.append(f"- {n}")
    for f in result.failures:
        out.append(f"- **Gate failed** for `{f['artifact']}`: " + "; ".join(
            [f"{k} {g['value']:.4g} (limit {g['limit']:g})" for k, g in (f.get("gates") or {}).items()
             if not g["passed"]]
            + [f"{a['remedy']}: " + (f"drop {a['drop']:.2f}" if "drop" in a else a.get("error") or a.get("skipped", ""))
               for a in f["attempts"]]))
    if result.chosen:
        c = result.chosen
        out.append(f"- For device `{c['profile']}`: **{c['artifact']}** ({c['why']})."
                   + (f" {c['note']}" if c.get("note") else ""))
    return "\n".join(out) + "\n"


def write_reports(result) -> None:
    write_json_atomic(result.out_dir / "report.json", result.to_dict())
    write_text_atomic(result.out_dir / "report.md", markdown(result))
