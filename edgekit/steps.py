"""What each recipe step does, in terms of the library: train, distill, prune, export, quantize,
evaluate, bench. Each call goes through ``Run.step`` so it is cached by content hash."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import formats
from .artifact import model_size, read_meta
from .compress import stages
from .compress.gate import check_gates, judge
from .compress.measure import gzip_size, weight_bytes
from .compress.report import ArtifactRow, relate_to_references
from .compress.stages import bench_extra, jsonable
from .errors import GateError
from .passes import BenchConfig, DistillConfig, PruneConfig, QuantizeConfig, from_recipe_step
from .runcache import Run, file_hash


def is_detection_recipe(recipe) -> bool:
    """A recipe that trains a detector (the zoo says the model's task): its data is a detection set and every
    score is the detection judge's (mAP@[.5:.95], centroid F1 for a FOMO model) under the key ``map``."""
    from .train_detect import is_detector

    return recipe.model.name is not None and is_detector(recipe.model.name)


def metric_key(recipe) -> str:
    """The report key of a recipe's headline metric: ``top1``, or ``map`` for a detector."""
    return "map" if is_detection_recipe(recipe) else "top1"


class _Data:
    """The dataset, loaded only when a step that isn't cached needs it."""

    def __init__(self, recipe):
        self.spec = recipe.data
        self.augment = recipe.train.augment  # audio loaders augment the training split from raw clips
        self.detection = is_detection_recipe(recipe)
        self.seed = recipe.train.seed
        self._ds = None

    def get(self):
        if self._ds is None and self.detection:
            from .data.detection import load_detection

            ds = load_detection(self.spec.name, seed=self.seed, **self.spec.options)
            if self.spec.limit:  # as train_detector's limit: the first images of every split
                ds.splits = {k: v[:self.spec.limit] for k, v in ds.splits.items()}
            self._ds = ds
        elif self._ds is None:
            from .data import load_dataset

            self._ds = load_dataset(self.spec.name, limit=self.spec.limit, augment=self.augment, **self.spec.options)
        return self._ds


def _rel(run: Run, p: Path) -> str:
    return str(Path(p).resolve().relative_to(run.out.resolve()))


def _abs(run: Run, rel: str) -> Path:
    return run.out / rel


def _train(run: Run, ds: _Data, model, epochs: int, label: str) -> dict:
    r = run.recipe
    cfg = {"model": model.model_dump(), "data": r.data.model_dump(), "train": r.train.model_dump(), "epochs": epochs}

    if is_detection_recipe(r):
        return run.step(f"train-{label}", cfg, {}, lambda folder: _train_detector(run, model, epochs, label,
                                                                                 folder)).outputs

    def fn(folder: Path) -> dict:
        from .train import train

        res = train(model.name, ds.get(), epochs=epochs, out_dir=folder / "run", batch_size=r.train.batch_size,
                    learning_rate=r.train.learning_rate, weight_decay=r.train.weight_decay, seed=r.train.seed,
                    patience=r.train.patience, model_options=model.options, augment=r.train.augment,
                    weights=r.train.weights if label != "teacher" else None,
                    freeze_epochs=r.train.freeze_epochs if label != "teacher" else None,
                    overwrite=True, quiet=run.quiet)
        return {"model": _rel(run, res.model_path), "top1": res.metrics["top1"], "label": label,
                "curves": _rel(run, res.out_dir / "curves.png"), "confusion": _rel(run, res.out_dir / "confusion.png"),
                "params": res.metrics.get("params"), "train_seconds": res.metrics.get("train_seconds")}

    return run.step(f"train-{label}", cfg, {}, fn).outputs


def _train_detector(run: Run, model, epochs: int, label: str, folder: Path) -> dict:
    """A detector trained by ``edgekit train``'s detection path; ``model.options.input_size`` is its input side."""
    from .train_detect import DEFAULT_SIZE, train_detector

    r = run.recipe
    opts = dict(model.options)
    size = int(opts.pop("input_size", DEFAULT_SIZE))
    res = train_detector(model.name, r.data.name, epochs=epochs, out_dir=folder / "run", batch_size=r.train.batch_size,
                         learning_rate=r.train.learning_rate, weight_decay=r.train.weight_decay, seed=r.train.seed,
                         patience=r.train.patience, input_size=size, model_options=opts, limit=r.data.limit,
                         augment=bool(r.train.augment), weights=r.train.weights, overwrite=True, quiet=run.quiet)
    m = res.metrics
    return {"model": _rel(run, res.model_path), "map": m["map"] if "map" in m else m["f1"],
            "metric": "mAP@[.5:.95]" if "map" in m else "centroid F1", "map50": m.get("map50"), "label": label,
            "params": m.get("params"), "macs": m.get("macs"), "train_seconds": m.get("train_seconds")}


def execute(run: Run) -> dict:
    r = run.recipe
    if r.model.path is not None:
        return _execute_foreign(run)
    ds = _Data(r)
    report: dict = {"recipe": r.name, "description": r.description, "data": r.data.name, "model": r.model.name,
                    "target": r.target, "gates": r.gates.model_dump(), "training": {}, "compression": {}}
    key = metric_key(r)
    distill = next((s for s in r.steps if s.type == "distill"), None)
    if distill:
        teacher = _train(run, ds, distill.teacher, distill.teacher_epochs, "teacher")
        epochs = distill.epochs or r.train.epochs
        cfg = distill.model_dump()
        rec = run.step("distill", {**cfg, "model": r.model.model_dump(), "train": r.train.model_dump(),
                                   "epochs": epochs},
                       {"teacher": file_hash(_abs(run, teacher["model"]))},
                       lambda folder: _distill(run, ds, teacher, distill, epochs, folder))
        current = rec.outputs
        report["training"] = {"teacher": teacher, "student_distilled": current}
        report["distillation"] = {"teacher_top1": teacher["top1"], "student_alone_top1": current["alone_top1"],
                                  "student_distilled_top1": current["top1"], "temperature": distill.temperature,
                                  "alpha": distill.alpha, "epochs": epochs}
    else:
        current = _train(run, ds, r.model, r.train.epochs, "float")
        report["training"] = {"float": current}
    for s in r.steps:
        if s.type == "prune":
            inp = current
            rec = run.step(f"prune-{s.mode}", {**s.model_dump(), "train": r.train.model_dump()},
                           {"model": file_hash(_abs(run, inp["model"]))},
                           lambda folder, s=s, inp=inp: _prune(run, ds, inp, s, folder))
            current = rec.outputs
            report["compression"][f"prune-{s.mode}"] = current
    report["final_keras"] = current
    base = report["training"].get("teacher") or report["training"].get("float")
    if current is not base and r.gates.max_drop is not None:  # prune/distill: classifiers only (check_names)
        # A compressed float model that already misses the bar can't be rescued by int8 remedies.
        j = judge(float(current["top1"]), float(base["top1"]), r.gates.max_drop)
        lost = j["drop"]
        if not j["passed"]:
            kinds = ", ".join(s.type for s in r.steps if s.type != "quantize")
            raise GateError(f"The compressed float model ({kinds}) scores {current['top1']:.4f} against "
                            f"{base['top1']:.4f} before compression: {lost:.2f} points lost, gate max_drop is "
                            f"{r.gates.max_drop:g}. Fine-tune longer (steps.N.epochs), compress less, or raise "
                            f"gates.max_drop. Step folders are in {run.out / 'steps'}")
    quant = next((s for s in r.steps if s.type == "quantize"), None)
    src_hash = file_hash(_abs(run, current["model"]))
    artifacts: list[dict] = []
    report["failures"] = []
    if r.export.float or quant is None:
        # Every float artifact is gated as edgekit compress gates it (stages.gate_floats): a miss is no
        # quantization source and no artifact.
        rec = run.step("export-float", {"formats": r.export.formats, "max_drop": r.gates.max_drop,
                                        f"reference_{key}": base[key]}, {"model": src_hash},
                       lambda folder: _export_float(run, ds, current, float(base[key]), folder))
        artifacts += rec.outputs["artifacts"]
        report["failures"] += rec.outputs.get("failures", [])
    if quant is not None:
        floats = {a["format"]: a["path"] for a in artifacts}
        rec = run.step(f"quantize-{'+'.join(quant.precision)}", {**quant.model_dump(), "formats": r.export.formats,
                                         "max_drop": r.gates.max_drop, f"reference_{key}": base[key]},
                       {"model": src_hash},
                       lambda folder: _quantize(run, ds, current, quant, floats, base[key], folder))
        artifacts += rec.outputs["artifacts"]
        report["failures"] += rec.outputs.get("failures", [])
        report["compression"]["quantize"] = {k: v for k, v in rec.outputs.items() if k != "artifacts"}
    keys = {a["path"]: file_hash(_abs(run, a["path"])) for a in artifacts}
    if key == "map":
        from .detect_report import evaluate_step

        ev = run.step("evaluate-detection", {"split": "test", "limit": r.data.limit}, {"model": src_hash, **keys},
                      lambda folder: evaluate_step(run, ds.get(), current, artifacts, folder))
        report["metric"] = {"key": "map", "name": ev.outputs["metric"], "unit": f"points of {ev.outputs['metric']}"}
        report["detection"] = {k: v for k, v in ev.outputs.items() if k != "results"}
        report["compressed_keras_map"] = ev.outputs["reference_map"]
        return _measure_gate_pick(run, report, artifacts, ev.outputs["results"], float(base[key]), keys)
    ev = run.step("evaluate", {"split": "test"}, {"model": src_hash, **keys},
                  lambda folder: _evaluate(run, ds, current, artifacts, folder))
    # The bar is the model before any compression: the float model the recipe trained, or the
    # teacher when distilling. Measuring against the pruned model would hide what pruning cost.
    report["compressed_keras_top1"] = ev.outputs["reference_top1"]
    return _measure_gate_pick(run, report, artifacts, ev.outputs["results"], float(base["top1"]), keys)


def _measure_gate_pick(run: Run, report: dict, artifacts: list[dict], evaluated: dict, reference: float,
                       keys: dict) -> dict:
    """The stages every recipe ends with, whatever its source: bench every artifact, check every gate against
    ``reference`` (top-1 of the model before compression), pick one for the target, publish what passed."""
    r = run.recipe
    bench_cfg = r.bench.model_dump()
    bn = run.step("bench", bench_cfg, keys, lambda folder: _bench(run, artifacts, BenchConfig(**bench_cfg)))
    metric = report.get("metric") or {}
    rows = [_artifact_row(a, evaluated[a["path"]], bn.outputs["results"][a["path"]], reference, r.gates,
                          metric.get("key", "top1"), metric.get("unit", "points of top-1")) for a in artifacts]
    relate_to_references(rows)
    rows = [row.to_dict() for row in rows]
    for row in rows:
        row["size_ratio"] = row.get("size_x")  # the recipe report's name for it, kept for its readers
    report[f"reference_{metric.get('key', 'top1')}"] = reference
    report["artifacts"] = rows
    report["best"] = _pick(rows, r.target)
    _publish(run, rows)
    return report


def _artifact_row(a: dict, evaluated: dict, bench: dict, reference: float, gates, key: str = "top1",
                  unit: str = "points of top-1") -> ArtifactRow:
    """A recipe artifact as the one report row: top-1 (a detector's mAP: ``key``) on the test split and its drop
    against ``reference``, latency from the bench step, every gate of the recipe."""
    top1 = evaluated[key]
    g = check_gates(gates, top1=top1, reference_top1=reference, size_bytes=a["size_bytes"], p50_ms=bench["p50_ms"])
    missed = [k for k, v in g.items() if not v["passed"]]
    extra = {k: a[k] for k in ("path", "asked", "verification") if k in a}
    extra["confusion"] = evaluated.get("confusion_png")
    extra.update({k: evaluated[k] for k in ("map50", "per_class") if k in evaluated and key == "map"})
    extra.update(bench_extra(bench))
    return ArtifactRow(a["path"], a["format"], a["precision"], "FAIL " + ",".join(missed) if missed else "pass",
                       metrics={key: top1, "drop": (reference - top1) * 100}, drop_unit=unit,
                       size_bytes=a["size_bytes"], gzip_bytes=a.get("gzip_bytes"), weight_bytes=a.get("weight_bytes"),
                       p50_ms=bench["p50_ms"],
                       p99_ms=bench["p99_ms"], remedy=a.get("remedy"), sparsity=a.get("sparsity"),
                       params=a.get("params"), gates=g, extra=extra)


# --- a model edgekit did not train (model.path) --------------------------------------------------------------
def _execute_foreign(run: Run) -> dict:
    """model.path: no training; the foreign ladder (edgekit compress MODEL.onnx's) in one cached step, then the
    same evaluate-bench-gate-pick-publish stages as a trained model."""
    r = run.recipe
    m = r.model
    quant = next(s for s in r.steps if s.type == "quantize")
    report: dict = {"recipe": r.name, "description": r.description, "data": r.data.name, "model": m.path,
                    "target": r.target, "gates": r.gates.model_dump(), "training": {}, "compression": {}}
    src_hash = file_hash(Path(m.path))
    inputs = {"model": src_hash, "data": file_hash(Path(r.data.name))}
    if m.labels:
        inputs["labels"] = file_hash(Path(m.labels))
    rec = run.step(f"quantize-foreign-{'+'.join(quant.precision)}",
                   {**quant.model_dump(), "formats": r.export.formats, "max_drop": r.gates.max_drop,
                    "preprocess": m.preprocess, "input": m.input, "data": r.data.model_dump()},
                   inputs, lambda folder: _quantize_foreign(run, quant, folder))
    out = rec.outputs
    artifacts = out["artifacts"]
    report["failures"] = out["failures"]
    report["compression"]["quantize"] = {k: v for k, v in out.items() if k != "artifacts"}
    report["compressed_keras_top1"] = out["reference_top1"]
    keys = {a["path"]: file_hash(_abs(run, a["path"])) for a in artifacts}
    evaluated = {a["path"]: {"top1": a.pop("top1")} for a in artifacts}
    return _measure_gate_pick(run, report, artifacts, evaluated, float(out["reference_top1"]), keys)


def _quantize_foreign(run: Run, spec, folder: Path) -> dict:
    """compress_foreign on model.path, gated on the labelled images of data.name; each artifact's top-1 on the
    held-out half, as the gate measured it."""
    from .compress.foreign import compress_foreign
    from .compress.judge import predict
    from .errors import DataError
    from .preprocess import load_image_data

    r = run.recipe
    m = r.model
    cfg = from_recipe_step(QuantizeConfig, spec)
    gate = _gate(r)
    try:
        res = compress_foreign(m.path, r.data.name, folder / "out", quantize=cfg, gate=gate,
                               formats_=tuple(r.export.formats), explicit_formats=True, labels=m.labels,
                               preprocess=m.preprocess, input_name=m.input, name="model", bench_runs=0,
                               progress=run.say)
    except GateError as e:  # what missed is recorded in the report; what passed goes on
        if getattr(e, "result", None) is None:
            raise
        res = e.result
    if res.mode != "accuracy":
        raise DataError(f"data.name {r.data.name}: a recipe gates on accuracy, so its images need class subfolders "
                        "named after the model's labels (model.labels); plain images only give edgekit compress's "
                        "fidelity gate")
    meta = read_meta(folder / "out" / res.rows[0].artifact)
    x, y = load_image_data(r.data.name, meta.preprocessing, meta.labels).split("test")
    arts = []
    for row in res.rows:
        path = folder / "out" / row.artifact
        top1 = float((predict(path, x).reshape(len(y), -1).argmax(1) == y).mean())
        arts.append({"format": row.format, "precision": row.precision, "path": _rel(run, path),
                     "size_bytes": model_size(path), "gzip_bytes": gzip_size(path), "params": None,
                     "sparsity": None, "remedy": row.remedy, "top1": top1})
    return {"artifacts": arts, "failures": [{**f, "precision": "int8"} for f in res.failures],
            "attempts": res.steps.get("quantize", {}), "reference_top1": res.steps["reference"]["top1"],
            "notes": res.notes}


def _save_model(run: Run, model, meta, folder: Path, ds, label: str, extra: dict) -> dict:
    from .artifact import write_meta
    from .compress.gate import top1_of

    path = folder / "model.keras"
    tmp = folder / "model.partial.keras"  # Keras insists on the .keras suffix
    model.save(tmp)
    tmp.replace(path)
    split = "test" if "test" in ds.splits else "val"
    top1 = top1_of(model, ds, split)
    meta = meta.copy(format="keras")
    meta.metrics = {"top1": top1, "split": split}
    write_meta(path, meta)
    return {"model": _rel(run, path), "top1": top1, "label": label, "params": int(model.count_params()), **extra}


def _distill(run: Run, ds: _Data, teacher: dict, spec, epochs: int, folder: Path) -> dict:
    from .compat import load_keras_model

    r = run.recipe
    data = ds.get()
    t_model = load_keras_model(_abs(run, teacher["model"]))
    cfg = from_recipe_step(DistillConfig, spec, epochs=epochs, learning_rate=r.train.learning_rate,
                           batch_size=r.train.batch_size, seed=r.train.seed)
    model, info = stages.distill(r.model.name, t_model, data, cfg, run.say, options=r.model.options)
    meta = read_meta(_abs(run, teacher["model"]))
    meta.provenance = {**(meta.provenance or {}), "step": "distill", "teacher": teacher["model"]}
    return _save_model(run, model, meta, folder, data, "distilled",
                       {"alone_top1": info.get("alone_top1"), "distill_info": jsonable(info)})


def _prune(run: Run, ds: _Data, inp: dict, spec, folder: Path) -> dict:
    from .compat import load_keras_model
    from .compress.prune import kernel_sparsity

    r = run.recipe
    data = ds.get()
    model = load_keras_model(_abs(run, inp["model"]))
    cfg = from_recipe_step(PruneConfig, spec, batch_size=r.train.batch_size, seed=r.train.seed)
    pruned, info = stages.prune(model, data, cfg, run.say)
    meta = read_meta(_abs(run, inp["model"]))
    meta.provenance = {**(meta.provenance or {}), "step": f"prune-{spec.mode}"}
    if spec.mode == "magnitude":
        meta.sparsity = float(kernel_sparsity(pruned))
    return _save_model(run, pruned, meta, folder, data, f"pruned-{spec.mode}",
                       {"sparsity": meta.sparsity, "params_before": int(model.count_params()),
                        "prune_info": jsonable(info)})


def _quantize(run: Run, ds: _Data, current: dict, spec, floats: dict, reference_top1: float, folder: Path) -> dict:
    """Every precision per format by the quantize stage edgekit compress runs (stages.quantize_and_gate), each
    gated against the model before compression."""
    from .compat import load_keras_model
    from .compress.gate import promote
    from .compress.stages import quantize_and_gate, target_arch
    from .compress.quantize import calibration_set

    r = run.recipe
    data = ds.get()
    model = load_keras_model(_abs(run, current["model"]))
    meta = read_meta(_abs(run, current["model"]))
    cfg = from_recipe_step(QuantizeConfig, spec)
    if cfg.target_arch is None and r.target:
        from .devices import load_profile

        cfg.target_arch = target_arch(load_profile(r.target))
    gate = _gate(r)
    split = _split(gate, data)
    ref = float(reference_top1)
    if getattr(data, "task", None) == "detection":
        from .compress.quantize import detection_calibration

        calib_full = detection_calibration(data, meta, cfg)
    else:
        calib_full = calibration_set(data, 10 ** 9, cfg.seed, None)
    float_paths = {fmt: _abs(run, p) for fmt, p in floats.items()}
    q = quantize_and_gate(model, r.export.formats, float_paths, folder / ".stage", "model", meta, cfg,
                          calib_full, data, split, ref, gate, run.say)
    arts = []
    for (fmt, asked), got in q.passed.items():
        final = promote(got["path"], folder / f"model_{got['precision']}{formats.get(fmt).suffix}")
        arts.append({"format": fmt, "precision": got["precision"], "asked": asked, "path": _rel(run, final),
                     "size_bytes": model_size(final), "gzip_bytes": gzip_size(final), "weight_bytes": weight_bytes(final), "params": current.get("params"),
                     "sparsity": read_meta(final).sparsity if read_meta(final) else None,
                     "remedy": got["remedy"]})
    shutil.rmtree(folder / ".stage", ignore_errors=True)
    return {"artifacts": arts, "failures": q.failures, "attempts": q.attempts, "reference_top1": ref}


def _export_float(run: Run, ds: _Data, current: dict, reference_top1: float, folder: Path) -> dict:
    """The float artifacts, verified against the Keras model and each gated against ``reference_top1``
    (stages.gate_floats, as edgekit compress does): a miss is deleted and listed in ``failures``."""
    from .export import export_model

    r = run.recipe
    data = ds.get()
    res = export_model(_abs(run, current["model"]), r.export.formats, folder, name="model")
    gate = _gate(r)
    score = None
    if getattr(data, "task", None) == "detection":  # judged in the detection judge's points, as int8 will be
        from .compress.gate import TaskScore

        score = TaskScore(data, _split(gate, data))
        score.reference(_abs(run, current["model"]))
    fg = stages.gate_floats(res.artifacts, data, _split(gate, data), reference_top1, gate.max_drop, run.say, score)
    arts = []
    for fmt, path in fg.passed.items():
        arts.append({"format": fmt, "precision": "float32", "path": _rel(run, path), "size_bytes": model_size(path),
                     "gzip_bytes": gzip_size(path), "weight_bytes": weight_bytes(path), "params": current.get("params"),
                     "sparsity": read_meta(path).sparsity, "verification": res.verification.get(fmt)})
    failures = [{"format": f["format"], "precision": "float32", "attempts": f["attempts"]} for f in fg.failures]
    return {"artifacts": arts, "failures": failures}


def _gate(r):
    """The recipe's gates as the stages' GateConfig (no max_drop: anything passes the accuracy gate)."""
    from .passes import GateConfig

    return GateConfig(max_drop=r.gates.max_drop if r.gates.max_drop is not None else 100.0).validate()


def _split(gate, data) -> str:
    return gate.split if gate.split in data.splits else "val"


def _evaluate(run: Run, ds: _Data, current: dict, artifacts: list[dict], folder: Path) -> dict:
    from .evaluate import evaluate, plot_confusion

    data = ds.get()
    ref = evaluate(_abs(run, current["model"]), data, "test")
    results = {}
    for a in artifacts:
        res = evaluate(_abs(run, a["path"]), data, "test")
        png = folder / f"confusion-{a['format']}-{a['precision']}.png"
        plot_confusion(res["confusion"], res["labels"], png,
                       title=f"{a['format']} {a['precision']}: top-1 {res['top1']:.3f}")
        results[a["path"]] = {"top1": res["top1"], "per_class": res["per_class"], "confusion": res["confusion"],
                              "confusion_png": _rel(run, png)}
    return {"reference_top1": ref["top1"], "reference_per_class": ref["per_class"], "results": results,
            "labels": ref["labels"]}


def _bench(run: Run, artifacts: list[dict], cfg: BenchConfig) -> dict:
    """Latency by the one measurement stage (stages.bench), with the recipe's typed bench: settings."""
    cfg = cfg.validate()
    return {"results": {a["path"]: stages.bench(_abs(run, a["path"]), cfg) for a in artifacts}}


def _pick(rows: list[dict], target: str | None) -> dict | None:
    """The artifact to deploy among those that passed every gate, in the formats the target device runs
    (``compress.stages.pick_for_device``): the fastest measured here when the target is this host, else the
    profile's preference order (this host's latency is then indicative only)."""
    from .compress.stages import is_this_host, pick_for_device

    prof = None
    if target:
        from .devices import load_profile

        prof = load_profile(target)
    pick = pick_for_device(rows, prof, lambda r: r["gates_passed"])
    if pick is None:
        return None
    best = pick.row
    key = "map" if "map" in best else "top1"
    return {"format": best["format"], "precision": best["precision"], "path": best["path"], "p50_ms": best["p50_ms"],
            key: best[key], "note": pick.note, "by": "latency here" if is_this_host(prof) else "profile preference"}


def _publish(run: Run, rows: list[dict]) -> None:
    """Copy passing artifacts (and sidecars) to <run>/artifacts/ under names that say what they are."""
    from .artifact import model_files, sidecar_path

    dest = run.out / "artifacts"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for r in rows:
        if not r["gates_passed"]:
            continue
        src = _abs(run, r["path"])
        stem = f"{run.recipe.name}-{r['precision']}"
        for f in model_files(src) + [sidecar_path(src)]:
            name = f.name.replace("model", stem, 1)
            shutil.copy2(f, dest / name)
        r["published"] = _rel(run, dest / src.name.replace("model", stem, 1))
