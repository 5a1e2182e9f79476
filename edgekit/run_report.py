"""Run reports: report.md and a self-contained report.html (inline CSS and base64 images, so it
opens with no network), with accuracy-vs-latency and accuracy-vs-size plots (Pareto front
marked), training curves and confusion matrices. Build side (matplotlib)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .tables import format_table, markdown_table

COLUMNS = ["format", "precision", "size_kb", "weights_x", "gzip_kb", "sparsity", "top1", "drop", "p50_ms", "p99_ms", "speedup",
           "gates"]
HEADERS = {"size_kb": "size KB", "weights_x": "weights x float", "gzip_kb": "gzip KB", "drop": "drop (pt)", "p50_ms": "p50 ms", "p99_ms": "p99 ms",
           "speedup": "speed-up vs float", "top1": "top-1"}


def metric(report: dict) -> tuple[str, str, float]:
    """(key, name, float reference) of the run's headline metric: top-1, or a detector's mAP@[.5:.95]."""
    m = report.get("metric") or {}
    key = m.get("key", "top1")
    return key, m.get("name", "top-1"), report[f"reference_{key}"]


def columns(report: dict) -> list[str]:
    key = metric(report)[0]
    return [key if c == "top1" else c for c in COLUMNS]


def headers(report: dict) -> dict:
    key, name, _ = metric(report)
    return {**HEADERS, key: name}


def table_rows(report: dict) -> list[dict]:
    key = metric(report)[0]
    rows = []
    for a in report["artifacts"]:
        failed = [k for k, g in a["gates"].items() if not g["passed"]]
        rows.append({"format": a["format"], "precision": a["precision"], "size_kb": a["size_bytes"] / 1024,
                     "gzip_kb": (a.get("gzip_bytes") or 0) / 1024, "weights_x": a.get("weights_x"),
                     "sparsity": f"{a['sparsity']:.0%}" if a.get("sparsity") else "-",
                     key: a[key], "drop": a["drop"], "p50_ms": a["p50_ms"], "p99_ms": a["p99_ms"],
                     "speedup": a.get("speedup"),
                     "gates": "pass" if not failed else "FAIL: " + ", ".join(failed)})
    return rows


def terminal_table(report: dict) -> str:
    return format_table(table_rows(report), columns(report), headers(report))


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower x is better, higher y is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _scatter(report: dict, xkey: str, xlabel: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arts = report["artifacts"]
    key, name, reference = metric(report)
    xs = [a[xkey] / 1024 if xkey == "size_bytes" else a[xkey] for a in arts]
    ys = [a[key] * 100 for a in arts]
    front = pareto(list(zip(xs, ys)))
    fig, ax = plt.subplots(figsize=(6, 4))
    markers = {"tflite": "o", "onnx": "s", "openvino": "^"}
    for a, x, y in zip(arts, xs, ys):
        ax.scatter(x, y, marker=markers.get(a["format"], "o"), s=60,
                   color="#1f77b4" if a["precision"] == "float32" else "#d62728",
                   edgecolor="black" if a["gates_passed"] else "none", label=f"{a['format']} {a['precision']}")
        ax.annotate(f"{a['format']}\n{a['precision']}", (x, y), textcoords="offset points", xytext=(5, 3), fontsize=7)
    fx, fy = [xs[i] for i in front], [ys[i] for i in front]
    ax.plot(fx, fy, "--", color="gray", label="Pareto front")
    ax.axhline(reference * 100, color="green", lw=0.8, label="Keras float")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{name} (%)")
    ax.set_title(f"{report['recipe']}: accuracy vs {xlabel.split(' (')[0]}")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="lower right")
    return save_figure(fig, ax, path)


def save_figure(fig, ax, path: Path, dpi: int = 110) -> Path:
    """A report plot's grid, layout and PNG file (its folder made), the figure closed."""
    import matplotlib.pyplot as plt

    if ax is not None:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def render_reports(report: dict, out: Path) -> tuple[str, str]:
    """report.md and report.html of a recipe run, as text (the plots are written under ``out/plots``); the run
    writes them with report.json through the one writer (:func:`edgekit.compress.report.write_report`)."""
    out = Path(out)
    plots = out / "plots"
    lat = _scatter(report, "p50_ms", "p50 latency (ms, this machine)", plots / "accuracy_vs_latency.png")
    size = _scatter(report, "size_bytes", "file size (KB)", plots / "accuracy_vs_size.png")
    report["plots"] = {"accuracy_vs_latency": str(lat.relative_to(out)), "accuracy_vs_size": str(size.relative_to(out))}
    rows = table_rows(report)
    key, name, reference = metric(report)
    COLS, HEADS = columns(report), headers(report)
    figs = {k: out / v for k, v in ((report.get("detection") or {}).get("figures") or {}).items()
            if k in ("pr_curve", "samples")}
    training = report.get("training", {})
    curves = [(name, out / t["curves"]) for name, t in training.items() if t.get("curves")]
    confusions = [(f"{a['format']} {a['precision']}", out / a["confusion"]) for a in report["artifacts"]
                  if a.get("confusion")]
    best = report.get("best")
    all_pass = all(a["gates_passed"] for a in report["artifacts"])

    md = [f"# {report['recipe']}", "", report.get("description") or "", "",
          f"Data: `{report['data']}` · model: `{report['model']}` · target: `{report.get('target') or '-'}` · "
          f"reference (float, before compression) {name}: **{reference:.4f}** · "
          f"gates: **{'all passed' if all_pass else 'FAILED'}**",
          "", "## Artifacts", "", markdown_table(rows, COLS, HEADS), ""]
    if best:
        md += [("Picked by the target profile's preference among the artifacts that pass the gates (p50 here is "
                "indicative only)" if best.get("by") == "profile preference" else "Fastest artifact that passes the "
                "gates") + f": **{best['format']} {best['precision']}** "
               f"(`{best['path']}`, p50 {best['p50_ms']:.3f} ms, {name} {best[key]:.4f}).", ""]
        if best.get("note"):
            md += [f"> {best['note']}", ""]
    notes = []  # the findings, shown in both reports
    for f in report.get("failures", []):
        last = f["attempts"][-1] if f["attempts"] else {}
        notes.append(f"**{f['format']} {f.get('precision', 'int8')} missed the accuracy gate and was not written** ({name} "
                     f"{last.get(key, float('nan')):.4f}, drop {last.get('drop', float('nan')):.2f} points; "
                     f"rungs tried: {', '.join(a['remedy'] for a in f['attempts'])}).")
        md += [notes[-1], ""]
    for a in report["artifacts"]:
        if a.get("remedy") and a["remedy"] != "none":
            asked = a.get("asked", a["precision"])
            notes.append(f"{a['format']} {asked} passed the gate at the rung **{a['remedy']}**"
                         + (f" (shipped as {a['precision']})" if asked != a["precision"] else "") + ".")
            md += [notes[-1], ""]
    dist = report.get("distillation")
    if dist:
        alone = dist.get("student_alone_top1")
        alone = f"{alone:.4f}" if alone is not None else "not trained (steps.N.baseline: false)"
        notes.append(f"Teacher top-1 {dist['teacher_top1']:.4f}; student trained alone "
                     f"{alone}; distilled student {dist['student_distilled_top1']:.4f} "
                     f"(T={dist['temperature']}, alpha={dist['alpha']}, {dist['epochs']} epochs, same data and seed).")
        md += ["## Distillation", "", notes[-1], ""]
    int8 = _int8_note(report)
    notes += [n for n in int8 if n.startswith("> ")]
    md += int8
    training_md = _training_md(report)
    md += training_md
    md += ["## Plots", "", "![accuracy vs latency](plots/accuracy_vs_latency.png)",
           "![accuracy vs size](plots/accuracy_vs_size.png)", ""]
    md += [f"![training curves: {n}]({p.relative_to(out)})" for n, p in curves]
    md += [""] + [f"![confusion: {n}]({p.relative_to(out)})" for n, p in confusions] + [""]
    if figs:
        md += ["## Detection", ""] + [f"![{k.replace('_', ' ')}]({p.relative_to(out)})" for k, p in figs.items()] + [""]

    def h(s):
        return html.escape(str(s))

    table_html = ["<table><thead><tr>" + "".join(f"<th>{h(HEADS.get(c, c))}</th>" for c in COLS) + "</tr></thead><tbody>"]
    for r in rows:
        cls = "pass" if r["gates"] == "pass" else "fail"
        cells = []
        for c in COLS:
            v = r.get(c)
            txt = f"{v:.4f}" if c == key else (f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else v))
            cells.append(f'<td class="{cls if c == "gates" else ""}">{h(txt)}</td>')
        table_html.append("<tr>" + "".join(cells) + "</tr>")
    table_html.append("</tbody></table>")
    notes_html = "".join(f"<p class='note'>{h(n.lstrip('> ').replace('**', ''))}</p>" for n in notes)
    train_html = "".join(f"<p>{h(n.lstrip('- ').replace('`', ''))}</p>" for n in training_md[2:] if n.strip())
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgekit report: {h(report['recipe'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f3f3f3; }}
td.pass {{ color: #0a7d28; font-weight: bold; }} td.fail {{ color: #b00020; font-weight: bold; }}
.banner {{ padding: 8px 12px; border-radius: 4px; background: {'#e6f4ea' if all_pass else '#fde7e9'}; }}
.note {{ background: #fff8e1; padding: 6px 10px; border-left: 4px solid #f0b400; }}
img {{ max-width: 48%; margin: 4px; border: 1px solid #eee; }}
</style></head><body>
<h1>{h(report['recipe'])}</h1><p>{h(report.get('description') or '')}</p>
<p class="banner">Data <code>{h(report['data'])}</code> · model <code>{h(report['model'])}</code> ·
target <code>{h(report.get('target') or '-')}</code> · reference (float, before compression) {h(name)}
<b>{reference:.4f}</b> ·
gates <b id="gates-status">{'all passed' if all_pass else 'FAILED'}</b></p>
<h2>Artifacts</h2>{''.join(table_html)}
{f"<p>{'Picked by the target preference' if best.get('by') == 'profile preference' else 'Fastest passing artifact'}: <b>{h(best['format'])} {h(best['precision'])}</b> (p50 {best['p50_ms']:.3f} ms)</p>" if best else ''}
{notes_html}
<h2>Training</h2>{train_html}
<h2>Accuracy vs latency and size</h2>{_img(lat)}{_img(size)}
<h2>Training curves</h2>{''.join(_img(p) for _, p in curves if p.exists())}
<h2>Confusion matrices</h2>{''.join(_img(p) for _, p in confusions if p.exists())}
{("<h2>Detection: precision-recall and held-out predictions</h2>" + ''.join(_img(p) for p in figs.values() if p.exists())) if figs else ''}
</body></html>
"""
    return "\n".join(md) + "\n", doc


def _int8_note(report: dict) -> list[str]:
    lines = []
    try:
        from .compress.quantize import has_int8_dot

        dot = has_int8_dot()
    except Exception:  # the note is advice; never fail a report over it
        dot = None
    why = {True: "this CPU has int8 dot-product instructions (VNNI), yet at this model size the "
                 "(de)quantization and kernel overheads outweigh them",
           False: "this CPU lacks int8 dot-product instructions (VNNI)",
           None: "measured on the build machine"}[dot]
    for a in report["artifacts"]:
        # Below 0.95x, so timer noise isn't reported as a finding.
        if a["precision"] in ("int8", "int16x8", "int8-weights") and a.get("speedup") is not None \
                and a["speedup"] < 0.95:
            lines.append(f"> {a['precision']} {a['format']} is slower than float here ({a['speedup']:.2f}x): {why}. "
                         "Its win here is size; measure on the device.")
    return lines + ([""] if lines else [])


def _training_md(report: dict) -> list[str]:
    t = report.get("training", {})
    if not t:
        return []
    lines = ["## Training", ""]
    for name, v in t.items():
        key = "map" if "map" in v else "top1"
        lines.append(f"- {name}: `{v.get('label', name)}` {v.get('metric', 'top-1')} {v.get(key, float('nan')):.4f}"
                     + (f", {v['train_seconds']:.0f} s" if v.get("train_seconds") else ""))
    for k, v in report.get("compression", {}).items():
        if isinstance(v, dict) and "top1" in v:
            extra = ", ".join(f"{kk}={vv}" for kk, vv in v.items() if kk in ("sparsity", "params", "kept_channels"))
            lines.append(f"- {k}: top-1 {v['top1']:.4f}" + (f" ({extra})" if extra else ""))
    return lines + [""]
