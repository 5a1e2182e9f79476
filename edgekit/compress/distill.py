"""Knowledge distillation (Hinton et al. 2015): a student learns from a teacher's softened outputs.

The loss is ``alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``. Zoo
models end in a softmax, so logits are recovered as log-probabilities (softmax is shift-invariant,
so ``softmax(log p / T)`` is exactly the tempered distribution). The student trained alone on the
same data, epochs and seed is always trained too and reported next to it: at a few thousand
parameters distillation often does not help, and the report must show it when it doesn't.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError, DataError


@dataclass
class DistillConfig:
    temperature: float = 4.0
    alpha: float = 0.3  # weight of the hard-label loss; 1 - alpha goes to the teacher
    epochs: int = 5
    learning_rate: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    baseline: bool = True  # also train the student alone (same data, epochs, seed)

    def validate(self) -> "DistillConfig":
        if not self.temperature > 0:
            raise ConfigError(f"Distillation temperature must be > 0; received {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"Distillation alpha must be in [0, 1]; received {self.alpha}")
        if self.epochs < 1:
            raise ConfigError(f"Distillation epochs must be >= 1; received {self.epochs}")
        return self


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


def make_distiller(student, teacher, temperature: float, alpha: float):
    """A ``keras.Model`` that trains ``student`` (what it calls and saves) with ``teacher`` inside its loss."""
    import keras
    from keras import ops

    class Distiller(keras.Model):
        def __init__(self):
            super().__init__(name="distiller")
            self.student = student
            self.teacher = teacher
            self.teacher.trainable = False
            self.T = float(temperature)
            self.alpha = float(alpha)
            self.ce = keras.losses.SparseCategoricalCrossentropy()

        def call(self, x, training=False):
            return self.student(x, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            eps = 1e-7
            t = self.teacher(x, training=False)
            t_soft = ops.softmax(ops.log(t + eps) / self.T, axis=-1)
            s_log = ops.log_softmax(ops.log(y_pred + eps) / self.T, axis=-1)
            kl = ops.mean(ops.sum(t_soft * (ops.log(t_soft + eps) - s_log), axis=-1))
            hard = self.ce(y, y_pred)
            return self.alpha * hard + (1.0 - self.alpha) * (self.T ** 2) * kl

    return Distiller()


def distill(student, teacher, ds, cfg: DistillConfig, say: Callable[[str], None] = lambda s: None):
    """Return ``(distilled student, info)``; ``info["alone"]`` holds the student trained without a teacher."""
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
