"""One typed schema per compression pass: fields, defaults, help text and validation, written once.

``PruneConfig``, ``DistillConfig``, ``QuantizeConfig`` and ``GateConfig`` are the library's configs;
the recipe steps (``recipe.py``: :func:`pydantic_fields`) and the ``edgekit compress`` options
(``commands/compress.py``: :func:`click_options`) are derived from them, so a field added here appears
in the CLI, the recipe and ``--help`` at once, and a bad value gets the same message everywhere,
before anything heavy is imported. Stdlib only.

A field is declared with :func:`option`: ``cli`` names its flag (``False``: not on the command line,
e.g. the epochs and learning rate that ``compress`` sets for every pass at once); ``recipe=False``
keeps it out of recipe steps (filled from the recipe's ``train`` section instead).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, allowed
from .formats import PRECISIONS

# The ladder an int8 miss climbs, in order: the int8 remedies, then mixed precision (the sensitive ops in
# float), then int16 activations (in the formats that make them). "nncf" is ONNX's second quantizer: NNCF's
# post-training quantization (quantizers where OpenVINO's fused patterns need them, per-channel symmetric
# weights, bias correction) in place of ONNX Runtime's static QDQ. On centernet_lite0 (shapes, 400 test
# images) ONNX Runtime's int8 lost 7.0 points of mAP@[.5:.95] on every rung, int16 activations included; NNCF's
# lost 0.17. From that rung on ONNX stays with NNCF (cumulative, as every remedy is; QAT and int16x8 excepted):
# its float-sensitive rung is NNCF's with the error-outlier layers float. "bias-correction" is TFLite's: the converter leaves the mean output shift that int8 rounding puts in
# each layer, which NNCF corrects in ONNX and OpenVINO (EfficientNet-Lite0 with its ImageNet head, 1,000 photo
# crops: top-1 agreement with float 0.838 -> 0.884).
REMEDIES = ("more-calibration", "per-channel", "bias-correction", "nncf", "float-sensitive", "qat", "mixed-precision",
            "int16x8")
_NUMERIC = (int, float)


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory=None, choices=None, ge=None, gt=None,
           le=None, lt=None, cli: str | bool | None = None, recipe: bool = True, required_in_recipe: bool = False,
           csv: bool = False):
    # csv: a list field that also takes one comma-separated string (--quantize int8,fp16; precision: int8).
    meta = {"help": help, "choices": tuple(choices) if choices else None, "ge": ge, "gt": gt, "le": le, "lt": lt,
            "cli": cli, "recipe": recipe, "required_in_recipe": required_in_recipe, "csv": csv}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _base_type(hint) -> tuple[type, bool, bool]:
    """(scalar type, optional?, list?) of a field's annotation."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        inner = typing.get_args(hint)
        return (inner[0] if inner else str), optional, True
    return hint, optional, False


class PassConfig:
    """Validation from field metadata; subclasses add cross-field rules in ``_check``."""

    WHAT = "pass"

    @classmethod
    def schema(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def check_field(cls, name: str, value: Any, label: str | None = None) -> Any:
        """Validate one value of field ``name``; returns it (a tuple becomes a list). Raises ConfigError."""
        f = next(x for x in dataclasses.fields(cls) if x.name == name)
        m = f.metadata
        what = label or f"{cls.WHAT} {name}"
        typ, optional, is_list = _base_type(_hints(cls)[name])
        if value is None:
            if optional:
                return None
            raise ConfigError(f"{what} is required; received None")
        if is_list:
            if m.get("csv") and isinstance(value, str):
                value = split_csv(value)
                if not value:
                    raise ConfigError(f"{what} is empty; allowed: {', '.join(m['choices'] or ())}")
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"{what} must be a list; received {value!r}")
            return [cls._check_scalar(what, typ, m, v) for v in value]
        return cls._check_scalar(what, typ, m, value)

    @staticmethod
    def _check_scalar(what, typ, m, v):
        # "Pruning stages must be ..." starts a sentence; "Unknown pruning mode 'x'" has the name inside one.
        if typ is bool:
            if not isinstance(v, bool):
                raise ConfigError(f"{what} must be true or false; received {v!r}")
        elif typ is int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{what} must be an integer; received {v!r}")
        elif typ is float:
            if isinstance(v, bool) or not isinstance(v, _NUMERIC) or math.isnan(v):
                raise ConfigError(f"{what} must be a number; received {v!r}")
            if math.isinf(v):
                raise ConfigError(f"{what} must be a finite number; received {v!r}")
        elif typ is str and not isinstance(v, str):
            raise ConfigError(f"{what} must be a name; received {v!r}")
        if m["choices"] is not None and v not in m["choices"]:
            inner = what if what.startswith("-") else what[:1].lower() + what[1:]
            raise ConfigError(allowed(v, m["choices"], inner))
        bounds = [("ge", lambda a, b: a >= b, ">="), ("gt", lambda a, b: a > b, ">"),
                  ("le", lambda a, b: a <= b, "<="), ("lt", lambda a, b: a < b, "<")]
        for key, ok, sym in bounds:
            if m[key] is not None and not ok(v, m[key]):
                rule = _range_text(m)
                raise ConfigError(f"{what} must be {rule}; received {v!r}")
        return v

    def validate(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, self.check_field(f.name, getattr(self, f.name)))
        self._check()
        return self

    def _check(self) -> None:
        pass


def split_csv(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def _range_text(m) -> str:
    if m["gt"] is not None and m["lt"] is not None:
        return f"strictly between {m['gt']:g} and {m['lt']:g}"
    if m["ge"] is not None and m["le"] is not None:
        return f"between {m['ge']:g} and {m['le']:g}"
    lo = f">= {m['ge']:g}" if m["ge"] is not None else f"> {m['gt']:g}" if m["gt"] is not None else None
    hi = f"<= {m['le']:g}" if m["le"] is not None else f"< {m['lt']:g}" if m["lt"] is not None else None
    return " and ".join(p for p in (lo, hi) if p)


@dataclass
class PruneConfig(PassConfig):
    WHAT = "Pruning"
    sparsity: float = option(0.5, "Fraction in (0, 1): of weights zeroed (magnitude) or of filters removed "
                                  "(channels).", gt=0, lt=1, cli="--prune", required_in_recipe=True)
    mode: str = option("magnitude", "magnitude: zero the smallest weights (smaller gzip); channels: remove "
                                    "conv filters (faster).", choices=("magnitude", "channels"), cli="--prune-mode")
    epochs: int = option(2, "Fine-tuning epochs.", ge=0, cli=False)
    learning_rate: float = option(1e-3, "Fine-tuning learning rate.", gt=0, cli=False)
    batch_size: int = option(64, "Fine-tuning batch size.", ge=1, cli=False, recipe=False)
    criterion: str = option("l1", "Channel ranking: kernel L1 norm or BatchNorm |gamma|.", choices=("l1", "bn"),
                            cli="--criterion")
    schedule_end: float = option(0.7, "Magnitude: the target sparsity is reached at this fraction of "
                                      "fine-tuning, then held.", gt=0, le=1, cli="--prune-schedule-end")
    power: int = option(3, "Magnitude: exponent of the polynomial sparsity schedule.", ge=1, cli="--prune-power")
    min_weights: int = option(64, "Magnitude: kernels smaller than this stay dense.", ge=0,
                              cli="--prune-min-weights")
    # Measured at 80%: global lost more (ds_cnn_s 4.9 vs 2.8 points, MobileNetV2 33 vs 21), so layer.
    scope: str = option("layer", "Magnitude: 'layer' prunes every kernel to the same sparsity, 'global' ranks "
                                 "all kernels together.", choices=("global", "layer"), cli="--prune-scope")
    recover: str = option("labels", "Fine-tune after pruning on the labels, or distill from the unpruned model.",
                          choices=("labels", "distill"), cli="--prune-recover")
    stages: int = option(1, "Channels: remove the filters in this many rounds, fine-tuning after each.", ge=1,
                         cli="--prune-stages")
    seed: int = option(0, "Random seed.", cli=False, recipe=False)


@dataclass
class DistillConfig(PassConfig):
    WHAT = "Distillation"
    temperature: float = option(4.0, "Softmax temperature of the teacher and student.", gt=0, cli="--temperature")
    alpha: float = option(0.3, "Weight of the hard-label loss; 1 - alpha goes to the teacher.", ge=0, le=1,
                          cli="--alpha")
    epochs: int = option(5, "Student epochs.", ge=1, cli=False, recipe=False)
    learning_rate: float = option(3e-3, "Student learning rate.", gt=0, cli=False, recipe=False)
    batch_size: int = option(64, "Batch size.", ge=1, cli=False, recipe=False)
    seed: int = option(0, "Random seed.", cli=False, recipe=False)
    baseline: bool = option(True, "Also train the student alone (same data, epochs, seed) for the report.",
                            cli="--distill-baseline/--no-distill-baseline")


@dataclass
class QuantizeConfig(PassConfig):
    WHAT = "Quantization"
    precision: list[str] = option(factory=lambda: ["int8"], help="Precisions to make, one or several "
                                  "(int8,fp16): int8; int16x8 (int16 activations, int8 weights); fp16 (float16 "
                                  "weights, float32 I/O); int8-weights (weight-only int8).", choices=PRECISIONS,
                                  cli="--quantize", csv=True)
    calibration_samples: int = option(200, "Calibration examples drawn from the training split.", ge=1,
                                      cli="--calibration-samples")
    # Per-tensor first: one scale per weight tensor keeps the file smallest (TFLite stores a float scale
    # and an int64 zero point per channel); per-channel is the gate's second remedy.
    per_channel: bool = option(False, "Per-channel weight scales from the start (a remedy otherwise).",
                               cli="--per-channel")
    bias_correction: bool = option(False, "TFLite: take the mean output shift int8 rounding puts in each layer off "
                                          "its bias, measured on the calibration data (a remedy otherwise).",
                                   cli="--bias-correction")
    int8_io: bool = option(False, "TFLite: int8 input and output tensors.", cli="--int8-io")
    activation_type: str = option("auto", "ONNX activations: auto picks by target CPU (uint8 with reduce_range "
                                          "on x86 without VNNI).", choices=("auto", "int8", "uint8"),
                                  cli="--activation-type")
    reduce_range: bool | None = option(None, "ONNX: 7-bit weights (default: by target CPU).",
                                       cli="--reduce-range/--no-reduce-range")
    keep_float: list[str] = option(factory=list, help="Layer/node names left in float (repeatable).",
                                   cli="--keep-float")
    float_sensitive: bool = option(False, "Keep the first weighted layer, the output heads (a detector's head convs) and any layer whose int8 "
                                          "error exceeds one output quantization step in float.",
                                   cli="--float-sensitive")
    mixed_precision: bool = option(False, "int8 with the sensitive ops (LayerNorm, Softmax, the embedding's "
                                          "gather, first and last weighted layers) in float.",
                                   cli="--mixed-precision")
    target_arch: str | None = option(None, "Target CPU architecture (default: this machine, or the device "
                                           "profile's).", cli="--target-arch")
    seed: int = option(0, "Random seed of the calibration draw.", cli=False)

    def _check(self) -> None:
        self.precision = list(dict.fromkeys(self.precision))
        if not self.precision:
            raise ConfigError(f"Quantization precision is empty; allowed: {', '.join(PRECISIONS)}")
        if self.int8_io and self.precision != ["int8"]:
            other = [p for p in self.precision if p != "int8"]
            raise ConfigError(f"--int8-io (int8_io) is for int8 alone; received precision {','.join(self.precision)} "
                              f"({', '.join(other)} keep float32 I/O). Allowed with --int8-io: int8")


@dataclass
class GateConfig(PassConfig):
    WHAT = "Gate"
    max_drop: float = option(1.0, "Top-1 points an artifact may lose against the float model (a detector: "
                                  "points of mAP@[.5:.95], of centroid F1 for a FOMO model).", ge=0,
                             cli="--max-drop")
    # The same gates a recipe's `gates:` section has, so the command and recipes judge alike.
    min_top1: float | None = option(None, "Absolute top-1 floor of every compressed artifact.", ge=0, le=1,
                                    cli="--min-top1")
    max_size_kb: float | None = option(None, "Largest model file (KB) a compressed artifact may be.", gt=0,
                                       cli="--max-size-kb")
    max_p50_ms: float | None = option(None, "Slowest p50 latency (ms, this machine, 1 thread) a compressed artifact "
                                            "may have.", gt=0, cli="--max-p50-ms")
    split: str = option("test", "Held-out split the gate evaluates on (val when the data has no test split).",
                        choices=("test", "val"), cli="--gate-split", recipe=False)
    # Without labels (a foreign model and a folder of images) the gate is fidelity to the float model.
    min_agreement: float = option(0.9, "No labels: int8 top-1 must agree with the float model's on this fraction of "
                                       "the held-out images.", ge=0, le=1, cli="--min-agreement", recipe=False)
    min_top5: float = option(0.99, "No labels: the float top-1 must be inside the int8 top-5 on this fraction.",
                             ge=0, le=1, cli="--min-top5", recipe=False)
    remedies: list[str] = option(factory=lambda: list(REMEDIES), help="Remedies tried in order on an int8 miss "
                                 "(mixed-precision and int16x8 only in the formats that make them; nncf, NNCF's quantizer, only in ONNX; "
                                 "bias-correction only in TFLite).",
                                 choices=REMEDIES, cli=False, recipe=False)


@dataclass
class BenchConfig(PassConfig):
    """Latency of every artifact (a recipe's ``bench:`` section; ``edgekit compress --bench-runs``)."""

    WHAT = "Bench"
    threads: int = option(1, "Threads the runtime may use.", ge=1, cli=False)
    runs: int = option(100, "Timed runs per artifact (p50 and p99 over them).", ge=1, cli=False)
    warmup: int = option(10, "Untimed runs first.", ge=0, cli=False)


@dataclass
class TrainConfig(PassConfig):
    """Training of a recipe's model (its ``train:`` section; also the batch size and seed of its passes)."""

    WHAT = "Train"
    epochs: int | None = option(None, "Epoch budget (default: sized to the data).", ge=1, cli=False)
    batch_size: int = option(64, "Batch size (also of pruning and distillation fine-tunes).", ge=1, cli=False)
    learning_rate: float = option(3e-3, "Peak learning rate.", gt=0, cli=False)
    weight_decay: float = option(1e-4, "AdamW weight decay.", ge=0, cli=False)
    patience: int | None = option(None, "Early stopping (default: a quarter of the budget, at least 8; 0: off).",
                                  ge=0, cli=False)
    augment: bool | dict = option(True, "true, false, or audio augmentation options (copies, shift_ms, gain_db, "
                                        "noise_prob, snr_db, speed, keep_clean).", cli=False)
    weights: str | None = option(None, "Pretrained backbone: 'imagenet' or a .keras / .weights.h5 file.", cli=False)
    freeze_epochs: int | None = option(None, "With weights: frozen-backbone epochs.", ge=0, cli=False)
    seed: int = option(0, "Seed of initialization, shuffling and augmentation (and of the passes).", cli=False)

    def _check(self) -> None:
        if isinstance(self.augment, bool) or isinstance(self.augment, dict):
            return
        raise ConfigError(f"Train augment must be true, false or a mapping of augmentation options; received "
                          f"{self.augment!r}")


# --- derived views --------------------------------------------------------------------------------------
def recipe_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("recipe", True)]


def from_recipe_step(cls, step, **fill):
    """A validated config from a recipe step (a pydantic model built by ``pydantic_fields``) plus ``fill``."""
    values = {f.name: getattr(step, f.name) for f in recipe_fields(cls)}
    values.update({k: v for k, v in fill.items() if v is not None})
    return cls(**values).validate()


def pydantic_fields(cls) -> dict:
    """``create_model`` field definitions for a recipe step (imports pydantic: build side)."""
    from typing import Literal

    from pydantic import Field

    out = {}
    hints = _hints(cls)
    for f in recipe_fields(cls):
        m = f.metadata
        ann = hints[f.name]
        if m["choices"]:
            typ, optional, is_list = _base_type(ann)
            lit = Literal[m["choices"]]
            ann = list[lit] if is_list else (lit | None if optional else lit)
        if m.get("csv"):
            from typing import Annotated

            from pydantic import BeforeValidator

            ann = Annotated[ann, BeforeValidator(lambda v: split_csv(v) if isinstance(v, str) else v)]
        kw = {k: m[k] for k in ("ge", "gt", "le", "lt") if m[k] is not None}
        if m["required_in_recipe"]:
            out[f.name] = (ann, Field(description=m["help"], **kw))
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = (ann, Field(default_factory=f.default_factory, description=m["help"], **kw))
        else:
            out[f.name] = (ann, Field(default=f.default, description=m["help"], **kw))
    return out


def click_options(cls, defaults: dict | None = None):
    """A decorator adding one Click option per CLI field of ``cls`` (imports click only).

    ``defaults`` overrides a field's CLI default (e.g. ``--prune`` defaults to off). Each value is checked
    by :meth:`PassConfig.check_field` as it is parsed, so a bad one stops the command before any work.
    """
    import click

    defaults = defaults or {}
    hints = _hints(cls)
    decorators = []
    for f in dataclasses.fields(cls):
        m = f.metadata
        if m["cli"] is False:
            continue
        flag = m["cli"] or f"--{cls.WHAT.lower()}-{f.name.replace('_', '-')}"
        param = f"{cls.__name__.removesuffix('Config').lower()}_{f.name}"
        typ, optional, is_list = _base_type(hints[f.name])
        default = defaults.get(f.name, f.default if f.default is not dataclasses.MISSING else None)

        def check(ctx, p, value, f=f, flag=flag, is_list=is_list, csv=m.get("csv")):
            if csv:
                return None if value is None else cls.check_field(f.name, value, label=flag)
            if value is None or (is_list and not value):
                return [] if is_list else None
            return cls.check_field(f.name, list(value) if is_list else value, label=flag)

        # Choices are checked by the schema (one message everywhere), so they are listed in the help.
        text = m["help"] + (f" One of: {', '.join(m['choices'])}." if m["choices"] and typ is str and not m.get("csv")
                            else "")
        kw: dict[str, Any] = {"help": text, "callback": check, "show_default": default is not None}
        if typ is bool:
            if "/" in flag:
                kw.update(default=default)
            else:
                kw.update(is_flag=True, default=bool(default))
        elif is_list and m.get("csv"):
            kw.update(default=None if default is None else ",".join(default), type=str)
        elif is_list:
            kw.update(multiple=True, type=typ)
        else:
            kw.update(default=default, type=typ)
        decorators.append(click.option(flag, param, **kw))

    def apply(fn):
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return apply


def config_from_options(cls, options: dict, **fill):
    """The config from a command's parsed options (named ``<pass>_<field>``) plus ``fill``."""
    prefix = cls.__name__.removesuffix("Config").lower() + "_"
    values = {k[len(prefix):]: v for k, v in options.items() if k.startswith(prefix) and v is not None}
    values.update({k: v for k, v in fill.items() if v is not None})
    return cls(**values).validate()


PASSES = {"prune": PruneConfig, "distill": DistillConfig, "quantize": QuantizeConfig, "gate": GateConfig,
          "bench": BenchConfig, "train": TrainConfig}


def markdown() -> str:
    """docs/passes.md: every pass field with its default, allowed values, CLI flag and recipe key."""
    out = ["# Compression passes", "", "Generated from `edgekit/passes.py` by `python -m edgekit.passes > docs/passes.md`;",
           "a test checks it is current. Recipe keys go under `steps: - {type: <pass>, ...}` (the gate's under",
           "`gates:`, bench under `bench:`, train under `train:`); fields without a recipe key come from the recipe's",
           "`train` section.", ""]
    for kind, cls in PASSES.items():
        out += [f"## {kind}", "", "| field | default | allowed | `edgekit compress` | recipe | what |",
                "|---|---|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            m = f.metadata
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if m.get("csv"):
                default = ",".join(default)
            rule = ", ".join(m["choices"]) if m["choices"] else _range_text(m) or "-"
            flag = "-" if m["cli"] is False else f"`{m['cli'] or f'--{cls.WHAT.lower()}-' + f.name}`"
            key = ("-" if not m["recipe"] else f"`gates.{f.name}`" if kind == "gate" else
                   f"`{kind}.{f.name}`" if kind in ("bench", "train") else f"`{f.name}`")
            text = m["help"].replace("|", "\\|")
            out.append(f"| {f.name} | `{default!r}` | {rule} | {flag} | {key} | {text} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    print(markdown(), end="")
