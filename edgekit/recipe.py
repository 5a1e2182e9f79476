"""Typed recipes: YAML pipelines of data → model → training → compression steps → exports → gates.

Validation happens before any work: a wrong field gets a message that names the field, what was
received and what is allowed. ``--set a.b=value`` edits are applied to the raw YAML first, and a
path that doesn't exist is an error, never a silently added key.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from .errors import ConfigError, allowed, first_line
from .formats import FORMATS
from .passes import (BenchConfig, DistillConfig, GateConfig, PruneConfig, QuantizeConfig, TrainConfig, from_recipe_step,
                     pydantic_fields)

try:
    from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
except ImportError:  # pragma: no cover - pydantic ships with the train extra
    from .errors import MissingDependencyError

    raise MissingDependencyError("pydantic", "train", what="Recipes")



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataSpec(_Strict):
    name: str = Field(description="Dataset name (edgekit data list) or a folder/file path")
    options: dict[str, Any] = Field(default_factory=dict, description="Loader options, e.g. frontend, voices")
    limit: int | None = Field(default=None, gt=0, description="Use at most this many examples (quick runs)")


class ModelSpec(_Strict):
    name: str | None = Field(default=None, description="Zoo model name (edgekit zoo list); or give path")
    options: dict[str, Any] = Field(default_factory=dict)
    # A model edgekit did not train (compressed, not trained): the same inputs as `edgekit compress MODEL.onnx`.
    path: str | None = Field(default=None, description="A model edgekit did not train: .onnx, .tflite or a "
                             "SavedModel folder (no training; a quantize step, gated on data.name's images)")
    preprocess: str | None = Field(default=None, description="With path: e.g. 'imagenet,size=224' (as "
                                   "edgekit compress --preprocess)")
    labels: str | None = Field(default=None, description="With path: class labels file, one per line")
    input: str | None = Field(default=None, description="With path: the image input's name")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.name is None) == (self.path is None):
            raise ValueError("give either name (a zoo model to train) or path (a model edgekit did not train); "
                             f"received {'both' if self.name else 'neither'}")
        if self.path is None:
            extra = [k for k in ("preprocess", "labels", "input") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"{', '.join(extra)} go with path (a model edgekit did not train); a zoo model "
                                 "takes its preprocessing and labels from the data")
        elif self.options:
            raise ValueError("options are zoo builder options; a model given by path is not built")
        return self


# The train section is TrainConfig's (passes.py), validated with its messages like the passes.
TrainSpec = create_model("TrainSpec", __base__=_Strict, **pydantic_fields(TrainConfig))


# The steps are derived from the pass schemas (edgekit/passes.py): one definition per field. A step adds only
# what a recipe needs beyond the pass itself (distillation's teacher); batch size and seed come from `train`.
PruneStep = create_model("PruneStep", __base__=_Strict, type=(Literal["prune"], ...), **pydantic_fields(PruneConfig))
DistillStep = create_model(
    "DistillStep", __base__=_Strict, type=(Literal["distill"], ...), teacher=(ModelSpec, ...),
    teacher_epochs=(int, Field(default=10, ge=1, description="Teacher training epochs")),
    epochs=(int | None, Field(default=None, ge=1, description="Student epochs (default: train.epochs)")),
    **pydantic_fields(DistillConfig))
QuantizeStep = create_model("QuantizeStep", __base__=_Strict, type=(Literal["quantize"], ...),
                            **pydantic_fields(QuantizeConfig))


Step = Annotated[Union[PruneStep, DistillStep, QuantizeStep], Field(discriminator="type")]


class ExportSpec(_Strict):
    formats: list[Literal[FORMATS]] = Field(default_factory=lambda: list(FORMATS), min_length=1)
    float: bool = Field(default=True, description="Also keep float artifacts (the reference for the accuracy drop)")


BenchSpec = create_model("BenchSpec", __base__=_Strict, **pydantic_fields(BenchConfig))


# One gate schema: the recipe's gates are GateConfig's (passes.py), as `edgekit compress --max-size-kb` etc.;
# only max_drop may be switched off here (null), since a recipe can gate on an absolute floor alone.
Gates = create_model("Gates", __base__=_Strict, **{
    **pydantic_fields(GateConfig),
    "max_drop": (float | None, Field(default=1.0, ge=0, description="Accuracy points lost vs the float model "
                                                                    "before compression (null: no drop gate)"))})


# A recipe's name becomes the run folder (runs/<name>) and the published artifacts' stem: one plain path
# component, never a path (``../x`` or ``/abs`` would write outside the runs folder).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"


class Recipe(_Strict):
    name: str = Field(description="Run folder and artifact stem: letters, digits, '.', '_', '-'")
    description: str = ""
    data: DataSpec
    model: ModelSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    steps: list[Step] = Field(default_factory=list)
    export: ExportSpec = Field(default_factory=ExportSpec)
    target: str | None = Field(default=None, description="Device profile (edgekit devices --profiles)")
    gates: Gates = Field(default_factory=Gates)
    bench: BenchSpec = Field(default_factory=BenchSpec)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name):
        import re

        if not re.fullmatch(NAME_PATTERN, name) or ".." in name:
            raise ValueError("must be one plain name (letters, digits, '.', '_', '-'; no '/', no '..', not hidden), "
                             "since it names the run folder")
        return name

    @field_validator("steps")
    @classmethod
    def _order(cls, steps):
        kinds = [s.type for s in steps]
        if kinds.count("quantize") > 1 or kinds.count("distill") > 1:
            raise ValueError(f"at most one distill and one quantize step; received {kinds}")
        if "quantize" in kinds and kinds.index("quantize") != len(kinds) - 1:
            raise ValueError(f"quantize must be the last step (it happens at export); received order {kinds}")
        if "distill" in kinds and kinds.index("distill") != 0:
            raise ValueError(f"distill must be the first step (it produces the model the others compress); "
                             f"received order {kinds}")
        return steps


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(e["loc"][:-1])
            lines.append(f"{loc}: unknown field (allowed: {', '.join(allowed)})")
        elif e["type"] == "missing":
            lines.append(f"{loc}: required field missing")
        elif e["type"] == "union_tag_invalid":
            lines.append(f"{loc}: unknown step type {e['ctx'].get('tag')!r} (allowed: distill, prune, quantize)")
        elif e["type"] == "union_tag_not_found":
            lines.append(f"{loc}: a step needs a 'type' (allowed: distill, prune, quantize)")
        elif _pass_message(e["loc"], got):
            lines.append(f"{loc}: {_pass_message(e['loc'], got)}")
        else:
            lines.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}; received {got!r}")
    if len(lines) == 1:  # the usual case: one line, as every other error
        return f"Invalid recipe {source}: {lines[0]}"
    return f"Invalid recipe {source}:\n  " + "\n  ".join(lines)


PASS_OF_STEP = {"prune": PruneConfig, "distill": DistillConfig, "quantize": QuantizeConfig}


def _pass_message(loc, value) -> str | None:
    """The pass schema's own message for a bad step field, so a recipe and the CLI say the same thing."""
    if len(loc) == 5 and isinstance(loc[4], int):  # one item of a list field (precision: [int8, fp32])
        loc, value = loc[:4], [value]
    if len(loc) == 2 and loc[0] in ("bench", "train"):
        return _field_message({"bench": BenchConfig, "train": TrainConfig}[loc[0]], loc[1], value)
    if len(loc) != 4 or loc[0] != "steps" or loc[2] not in PASS_OF_STEP:
        return None
    return _field_message(PASS_OF_STEP[loc[2]], loc[3], value)


def _field_message(cls, name, value) -> str | None:
    if name not in {f.name for f in dataclasses.fields(cls)}:
        return None
    try:
        cls.check_field(name, value)
    except ConfigError as err:
        return str(err)
    return None


def _allowed_fields(loc) -> list[str]:
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if part in ("prune", "distill", "quantize"):
            model = {"prune": PruneStep, "distill": DistillStep, "quantize": QuantizeStep}[part]
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        model = _first_model(ann)
    return sorted(getattr(model, "model_fields", {}) or {})


def _first_model(ann):
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in getattr(ann, "__args__", ()) or ():
        m = _first_model(a)
        if m is not None:
            return m
    return None


def apply_sets(raw: dict, sets: list[str]) -> dict:
    """Apply ``a.b.c=value`` edits (value parsed as YAML). Every path must already exist,
    except optional fields of a known section (e.g. ``data.limit``, ``gates.max_size_kb``)."""
    import copy

    raw = copy.deepcopy(raw)

    def parse(value: str, item: str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as e:  # an unclosed '[', or a tag such as !!python/object that safe_load refuses
            raise ConfigError(f"--set {item!r}: the value is not plain YAML ({first_line(e)}); "
                              "give a number, a word, [a, list] or {a: mapping}") from None

    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set needs key=value; received {item!r}")
        key, _, value = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set needs a key before '='; received {item!r}")
        node: Any = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            here = ".".join(parts[:i]) or "(top level)"
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set path {key!r}: {here} is a list of {len(node)}; "
                                      f"received index {part!r}")
                if last:
                    node[int(part)] = parse(value, item)
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set path {key!r}: {here} is a value, not a section")
            allowed = set(node) | set(_schema_fields(raw, parts[:i]))
            if part not in allowed:
                raise ConfigError(f"--set path {key!r} does not exist: no {part!r} in {here}. "
                                  f"Available: {', '.join(sorted(allowed)) or '(none)'}")
            if last:
                node[part] = parse(value, item)
            elif part not in node and parts[i + 1].isdigit():
                raise ConfigError(f"--set path {key!r}: {'.'.join(parts[:i + 1])} is a list of 0; "
                                  f"received index {parts[i + 1]!r} (add entries in the recipe file)")
            else:
                node = node.setdefault(part, {})
    return raw


def _schema_fields(raw: dict, loc: list[str]) -> list[str]:
    """Fields the schema allows at ``loc`` (so --set can fill an optional field not in the YAML)."""
    model: Any = Recipe
    node: Any = raw
    for part in loc:
        if isinstance(node, list):
            node = node[int(part)] if part.isdigit() and int(part) < len(node) else {}
            kind = node.get("type") if isinstance(node, dict) else None
            model = {"prune": PruneStep, "distill": DistillStep, "quantize": QuantizeStep}.get(kind)
            continue
        field = getattr(model, "model_fields", {}).get(part) if model is not None else None
        node = node.get(part, {}) if isinstance(node, dict) else {}
        model = _first_model(field.annotation) if field is not None else None
    return list(getattr(model, "model_fields", {}) or {})


MAX_RECIPE_BYTES = 1 << 20  # a recipe is a page of YAML; a FIFO or /dev/zero given as one must not hang the run


def load_recipe(source: str | os.PathLike, sets: list[str] | None = None) -> tuple[Recipe, dict]:
    """Load and validate a recipe (a path, or a shipped recipe's name). Returns (recipe, raw dict)."""
    from .fsutil import read_text_bounded
    from .resources import find_resource, list_resources

    p = Path(source)
    if not p.exists():
        found = find_resource("recipes", str(source))
        if found is None:
            names = ", ".join(list_resources("recipes")) or "(none shipped)"
            raise ConfigError(f"No recipe {str(source)!r}: not a file and not a shipped recipe. Shipped: {names}")
        p = found
    try:
        raw = yaml.safe_load(read_text_bounded(p, MAX_RECIPE_BYTES, "Recipe", "give a recipe YAML file"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"Recipe {p} is not UTF-8 text: byte {e.object[e.start]:#04x} at offset {e.start} "
                          "(save it as UTF-8)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"Recipe {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"Recipe {p} is nested too deeply to be a recipe (a recipe is a few levels of "
                          "mappings and lists)") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Recipe {p} must be a mapping at the top level; received {type(raw).__name__}")
    raw = apply_sets(raw, sets or [])
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, str(p))) from None
    except RecursionError:
        raise ConfigError(f"Recipe {p} is nested too deeply to be a recipe") from None
    return recipe, raw


def check_options(where: str, fn, options: dict, skip: int) -> None:
    """Option names a builder or loader takes, and values of the type of its defaults — without calling it."""
    import inspect

    params = list(inspect.signature(fn).parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    named = {p.name: p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    for k, v in options.items():
        if k not in named:
            raise ConfigError(f"{where}: unknown option {k!r}. Options: {', '.join(named) or '(none)'}")
        d = named[k].default
        if d is named[k].empty or d is None or v is None:
            continue
        ok = (isinstance(v, bool) if isinstance(d, bool) else
              isinstance(v, (int, float)) and not isinstance(v, bool) if isinstance(d, float) else
              isinstance(v, int) and not isinstance(v, bool) if isinstance(d, int) else
              isinstance(v, str) if isinstance(d, str) else True)
        if not ok:
            raise ConfigError(f"{where}.{k} must be a {type(d).__name__} like its default {d!r}; received {v!r}")


def check_names(recipe: Recipe) -> None:
    """Names that registries know (model, formats, profile, dataset) — checked before any training."""
    from .data import datasets
    from .zoo import models

    from .steps import is_detection_recipe

    if is_detection_recipe(recipe):
        return _check_detection(recipe)
    if recipe.model.path is not None:
        _check_foreign_model(recipe)
    elif recipe.model.name not in models:
        raise ConfigError("model.name: " + allowed(recipe.model.name, models.names(), "model"))
    else:
        _model_options("model.options", recipe.model.name, recipe.model.options)
    for i, s in enumerate(recipe.steps):
        if s.type == "distill":
            if s.teacher.name is None:
                raise ConfigError(f"steps.{i}.teacher: a teacher is a zoo model trained here (teacher.name); "
                                  f"received path {s.teacher.path!r}")
            if s.teacher.name not in models:
                raise ConfigError(f"steps.{i}.teacher.name: " + allowed(s.teacher.name, models.names(), "model"))
            _model_options(f"steps.{i}.teacher.options", s.teacher.name, s.teacher.options)
        if s.type == "quantize":
            # Cross-field rules (int8_io with another precision) and what each export format can make.
            from .formats import check_precisions

            try:
                cfg = from_recipe_step(QuantizeConfig, s)
                check_precisions(recipe.export.formats, cfg.precision)
            except ConfigError as e:
                raise ConfigError(f"steps.{i}.precision: {e}") from None
    if recipe.data.name not in datasets and not Path(recipe.data.name).exists():
        raise ConfigError(f"data.name: no dataset {recipe.data.name!r} (built-in: {', '.join(datasets.names())}; "
                          "or a path to an existing folder/file)")
    if recipe.data.name not in datasets:
        _check_data_path(Path(recipe.data.name))
    if recipe.data.name in datasets:
        check_options("data.options", datasets.get(recipe.data.name), recipe.data.options, skip=0)
    if recipe.target:
        from .devices import load_profile

        load_profile(recipe.target)


def _check_detection(recipe: Recipe) -> None:
    """A detector's recipe: detection data (a built-in set, a YOLO / COCO / VOC folder), no pruning or
    distillation step (their fine-tuning is classification training), loader options the detection loader takes."""
    from .data.detection import is_detection_data, load_detection

    opts = dict(recipe.model.options)
    size = opts.pop("input_size", 192)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"model.options.input_size must be a positive integer (the detector's input side, pixels); "
                          f"received {size!r}")
    _model_options("model.options", recipe.model.name, opts)
    if not is_detection_data(recipe.data.name):
        raise ConfigError(f"data.name: model {recipe.model.name!r} is a detector; {recipe.data.name!r} is not detection "
                          "data (a YOLO data.yaml, a COCO or VOC folder, or the built-in 'shapes')")
    check_options("data.options", load_detection, recipe.data.options, skip=1)
    for i, s in enumerate(recipe.steps):
        if s.type != "quantize":
            raise ConfigError(f"steps.{i}: a {s.type} step is not supported for a detector yet (its fine-tuning is "
                              "classification training); a detector's recipe takes a quantize step")
    if recipe.target:
        from .devices import load_profile

        load_profile(recipe.target)


def _model_options(where: str, name: str, options: dict) -> None:
    """Option names and value types a zoo builder takes; through its ``**kw`` (ds_cnn_s passes them on to
    ds_cnn) by the zoo's own check, which follows them."""
    from .zoo import check_model_options, models

    check_options(where, models.get(name), options, skip=2)
    try:
        check_model_options(name, options)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_data_path(p: Path) -> None:
    """A folder or file given as data.name looks like a dataset (cheap: a few directory listings, no reading):
    a .csv file, or class subfolders holding images or .wav clips."""
    from .data.folders import IMAGE_SUFFIXES

    what = f"data.name: {p}"
    if p.is_file():
        if p.suffix.lower() not in (".csv", ".tsv"):
            raise ConfigError(f"{what} is a file but not a .csv/.tsv; give a dataset name, a CSV file or a folder "
                              "with one subfolder per class")
        return
    wanted = IMAGE_SUFFIXES | {".wav"}
    try:
        classes = [d for d in sorted(p.iterdir()) if d.is_dir() and not d.name.startswith((".", "_"))]
        with_examples = [d for d in classes[:200] if any(f.suffix.lower() in wanted for f in _first_files(d))]
    except OSError as e:
        raise ConfigError(f"{what} can't be read ({e.strerror or e})") from None
    if len(with_examples) < 2:
        raise ConfigError(f"{what} is not a dataset folder: expected at least two class subfolders of images or "
                          f".wav clips; found {len(with_examples)} of {len(classes)} subfolders with any")


def _first_files(d: Path, limit: int = 50):
    """Up to ``limit`` files in ``d`` and one level below (enough to tell a class folder)."""
    n = 0
    for f in d.iterdir():
        if f.is_dir():
            for g in f.iterdir():
                if n >= limit:
                    return
                n += 1
                yield g
        else:
            if n >= limit:
                return
            n += 1
            yield f


def _check_foreign_model(recipe: Recipe) -> None:
    """A recipe on a model edgekit did not train: what ``edgekit compress MODEL.onnx`` checks, before any work."""
    from .compress.foreign import KIND_NAME, check_foreign, inspect_source, source_kind
    from .formats import can_become

    m = recipe.model
    p = Path(m.path)
    if not p.exists():
        raise ConfigError(f"model.path: {p} does not exist")
    kind = source_kind(p)
    if kind is None:
        raise ConfigError(f"model.path: {p.name} is not an ONNX, TFLite or SavedModel model (a .keras model is "
                          "trained by a recipe from model.name, or compressed with edgekit compress)")
    kinds = [s.type for s in recipe.steps]
    try:
        check_foreign(p, prune="prune" in kinds, distill="distill" in kinds, quantize="quantize" in kinds)
    except ConfigError as e:
        raise ConfigError(f"steps: {e}") from None
    quant = next(s for s in recipe.steps if s.type == "quantize")
    if list(quant.precision) != ["int8"]:
        raise ConfigError(f"steps.{kinds.index('quantize')}.precision: a model edgekit did not train takes int8 only "
                          f"for now; received {','.join(quant.precision)}")
    for f in recipe.export.formats:
        ok, why = can_become(kind)[f]
        if not ok:
            raise ConfigError(f"export.formats: {f} from {KIND_NAME[kind]}: not available; {why}")
    if m.labels is not None and not Path(m.labels).is_file():
        raise ConfigError(f"model.labels: {m.labels} is not a file (one label per line)")
    inspect_source(p, m.input)
    if m.preprocess is not None:
        from .preprocess import parse_preprocess

        parse_preprocess(m.preprocess)
