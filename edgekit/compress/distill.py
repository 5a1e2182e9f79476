"""Knowledge distillation (Hinton et al. 2015): a student learns from a teacher's softened outputs.

The loss is ``alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``. Zoo
models end in a softmax, so logits are recovered as log-probabilities (softmax is shift-invariant,
so ``softmax(log p / T)`` is exactly the tempered distribution). The student trained alone on the
same data, epochs and seed is always trained too and reported next to it: at a few thousand
parameters distillation often does not help, and the report must show it when it doesn't.
"""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError, DataError
from ..passes import DistillConfig
from ._fit import make_distiller


def student_model(name: str, ds, options: dict | None = None):
    """The distillation student, built the same way by ``edgekit compress --distill-from`` and by a recipe's
    distill step: zoo model ``name`` with ``options``, BatchNorm momentum 0.9 unless ``options`` say otherwise
    (0.99 leaves the moving statistics unsettled in a run of a few hundred steps: the model then predicts one
    class at inference)."""
    from ..zoo import build_model

    opts = dict(options or {})
    if name.startswith(("ds_cnn", "mobilenet")):
        opts.setdefault("bn_momentum", 0.9)
    return build_model(name, ds.input_shape, ds.num_classes, **opts)


def check_teacher(teacher, teacher_meta, student, ds) -> None:
    """Teacher and student must solve the same task on the same inputs with the same labels."""
    t_in, s_in = tuple(teacher.inputs[0].shape[1:]), tuple(student.inputs[0].shape[1:])
    if t_in != s_in:
        raise ConfigError(f"Teacher input shape {t_in} differs from the student's {s_in}; distillation needs both "
                          "to read the same examples")
    t_out, s_out = int(teacher.outputs[0].shape[-1]), int(student.outputs[0].shape[-1])
    if t_out != s_out:
        raise ConfigError(f"Teacher has {t_out} outputs but the student has {s_out}; they must predict the same "
                          "classes")
    if teacher_meta is not None:
        if teacher_meta.task and teacher_meta.task != ds.task:
            raise ConfigError(f"Teacher task {teacher_meta.task!r} differs from the data's task {ds.task!r}")
        if teacher_meta.labels and list(teacher_meta.labels) != list(ds.labels):
            raise DataError(f"Teacher labels ({', '.join(map(str, teacher_meta.labels[:6]))}...) differ from the "
                            f"data's labels ({', '.join(map(str, ds.labels[:6]))}...)")


def distill(student, teacher, ds, cfg: DistillConfig, say: Callable[[str], None] = lambda s: None):
    """Return ``(distilled student, info)``; ``info["alone_top1"]`` is the student trained without a teacher."""
    import keras

    from ..evaluate import evaluate_predictions
    from ._fit import finetune
    from .prune import clone_with_weights

    cfg.validate()
    check_teacher(teacher, None, student, ds)
    split = "test" if "test" in ds.splits else "val"
    xt, yt = ds.split(split)

    def top1(m):
        return evaluate_predictions(m.predict(xt, batch_size=256, verbose=0), yt, ds.labels)["top1"]

    init = clone_with_weights(student)  # both runs start from the same weights
    info = {"temperature": cfg.temperature, "alpha": cfg.alpha, "epochs": cfg.epochs, "seed": cfg.seed,
            "split": split, "teacher_top1": top1(teacher)}
    if cfg.baseline:
        alone = clone_with_weights(init)
        finetune(alone, ds, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                 seed=cfg.seed, say=say, what="student alone")
        info["alone_top1"] = top1(alone)
    keras.utils.set_random_seed(cfg.seed)
    s = clone_with_weights(init)
    finetune(s, ds, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=cfg.seed,
             say=say, what="distilling", teacher=teacher, temperature=cfg.temperature, alpha=cfg.alpha)
    info["distilled_top1"] = top1(s)
    if "alone_top1" in info:
        info["gain_points"] = 100.0 * (info["distilled_top1"] - info["alone_top1"])
    return s, info


__all__ = ["DistillConfig", "check_teacher", "distill", "make_distiller"]
