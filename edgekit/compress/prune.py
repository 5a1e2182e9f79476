"""Pruning on plain Keras 3 (tensorflow-model-optimization rejects Keras 3 models).

* ``magnitude``: unstructured. During fine-tuning a callback raises each kernel's sparsity along a
  polynomial schedule (Zhu & Gupta 2017, as tfmot does) and zeroes its smallest weights after every
  step. The zeros survive conversion (BatchNorm folding multiplies them, it can't revive them), so
  every exported artifact shrinks under gzip; dense kernels run no faster.
* ``channels``: structured. Conv filters are ranked (L1 norm of the kernel or |gamma| of the
  BatchNorm after it), the model is rebuilt thinner with fresh layers, the kept weights are copied
  (the consumers' input channels sliced to match) and the model is fine-tuned. Fewer MACs: this is
  what buys latency on CPUs.

Channel groups are found by following each Conv2D's output through channel-wise layers (BN,
activations, dropout, padding, pooling, depthwise conv) to the convs / Dense that consume it. A
group that reaches an Add, Multiply, Concatenate, Reshape, Flatten or the model output is left
alone (residual and squeeze-excite couplings), so a MobileNetV2 prunes its expansion channels and
a DS-CNN every layer.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import numpy as np

from ..errors import ConfigError, ModelError, allowed
from ..passes import DistillConfig, PruneConfig

MODES = ("magnitude", "channels")
CRITERIA = ("l1", "bn")
SCOPES = ("global", "layer")
RECOVER = ("labels", "distill")


# --- unstructured magnitude pruning --------------------------------------------------------------
def _prunable_kernels(model, min_weights: int):
    import keras

    L = keras.layers
    out = []
    for layer in _leaf_layers(model):
        if isinstance(layer, L.DepthwiseConv2D):
            v = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
        elif isinstance(layer, (L.Conv1D, L.Conv2D, L.Dense, L.EinsumDense)):
            v = layer.kernel
        else:
            continue
        if int(np.prod(v.shape)) >= min_weights:
            out.append(v)
    return out


def _leaf_layers(model):
    from ..compat import _all_layers

    return _all_layers(model)  # nested models too; callers filter by layer type


__all__ = ["PruneConfig", "prune", "kernel_sparsity", "clone_with_weights"]


def polynomial_sparsity(step: int, end_step: int, final: float, initial: float = 0.0, power: int = 3) -> float:
    """Sparsity at ``step``: ``final + (initial - final) * (1 - step/end)^power``, held at ``final`` after ``end``."""
    t = min(1.0, max(0.0, step / max(1, end_step)))
    return float(final + (initial - final) * (1.0 - t) ** power)


def magnitude_callback(kernels, final: float, end_step: int, power: int = 3, frequency: int = 1,
                       scope: str = "layer"):
    """A Keras callback that keeps ``kernels`` pruned to the scheduled sparsity after every train step."""
    import keras

    class MagnitudePruning(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = 0
            self.masks = [None] * len(kernels)

        def _update_masks(self, s):
            if scope == "global":
                return self._update_global(s)
            for i, v in enumerate(kernels):
                w = np.abs(np.asarray(v.numpy()))
                k = int(round(s * w.size))
                if k <= 0:
                    self.masks[i] = None
                    continue
                # Ties at the threshold would over-prune; rank instead and drop exactly k weights.
                order = np.argsort(w, axis=None, kind="stable")
                m = np.ones(w.size, np.float32)
                m[order[:k]] = 0.0
                self.masks[i] = keras.ops.convert_to_tensor(m.reshape(w.shape))

        def _update_global(self, s):
            ws = [np.abs(np.asarray(v.numpy())).ravel() for v in kernels]
            flat = np.concatenate(ws)
            k = int(round(s * flat.size))
            if k <= 0:
                self.masks = [None] * len(kernels)
                return
            # Exactly k zeros overall: rank all weights together, ties broken by position.
            drop = np.zeros(flat.size, bool)
            drop[np.argsort(flat, kind="stable")[:k]] = True
            start = 0
            for i, (v, w) in enumerate(zip(kernels, ws)):
                m = (~drop[start:start + w.size]).astype(np.float32).reshape(tuple(v.shape))
                self.masks[i] = keras.ops.convert_to_tensor(m)
                start += w.size

        def apply(self):
            # Backend tensors, not NumPy round trips: this runs after every training step.
            for v, m in zip(kernels, self.masks):
                if m is not None:
                    v.assign(v * m)

        def on_train_begin(self, logs=None):
            self._update_masks(polynomial_sparsity(0, end_step, final, power=power))
            self.apply()

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step % frequency == 0 or self.step == end_step:
                if self.step <= end_step:
                    self._update_masks(polynomial_sparsity(self.step, end_step, final, power=power))
            self.apply()

        def on_train_end(self, logs=None):
            # However short the run, the result has exactly the final sparsity.
            self._update_masks(final)
            self.apply()

    return MagnitudePruning()


def kernel_sparsity(model, min_weights: int = 64) -> float:
    """Fraction of exact zeros over the prunable kernels of a Keras model."""
    ks = _prunable_kernels(model, min_weights)
    total = sum(int(np.prod(v.shape)) for v in ks)
    zeros = sum(int(np.sum(np.asarray(v.numpy()) == 0)) for v in ks)
    return zeros / total if total else 0.0


def magnitude_prune(model, ds, cfg: PruneConfig, say: Callable[[str], None] = lambda s: None):
    """Prune a copy of ``model`` to ``cfg.sparsity`` of its kernel weights while fine-tuning on ``ds``."""
    cfg.validate()
    teacher = _teacher(model, cfg)
    model = clone_with_weights(model)
    kernels = _prunable_kernels(model, cfg.min_weights)
    if not kernels:
        raise ModelError("Magnitude pruning found no Conv/Dense kernels to prune in this model")
    steps = math.ceil(len(ds.split("train")[1]) / cfg.batch_size)
    total = max(1, cfg.epochs * steps)
    cb = magnitude_callback(kernels, float(cfg.sparsity), end_step=max(1, int(total * cfg.schedule_end)),
                            power=cfg.power, frequency=max(1, steps // 10), scope=cfg.scope)
    history = {}
    if cfg.epochs:
        history = _recover(model, teacher, ds, cfg, say, f"magnitude pruning to {cfg.sparsity:.0%}", [cb])
    else:
        cb._update_masks(float(cfg.sparsity))
        cb.apply()
    info = {"mode": "magnitude", "scope": cfg.scope, "target": float(cfg.sparsity), "kernels": len(kernels),
            "sparsity": kernel_sparsity(model, cfg.min_weights), "epochs": cfg.epochs, "recover": cfg.recover,
            "history": history}
    return model, info


def _recover(pruned, teacher, ds, cfg: PruneConfig, say, what: str, callbacks=()) -> dict:
    """Fine-tune ``pruned`` in place: on the labels, or (``teacher``: a copy of the unpruned model)
    distilled from it with DistillConfig's temperature and alpha."""
    from ._fit import finetune

    d = DistillConfig()
    if teacher is not None:
        what = f"{what}, distilling from the unpruned model"
    return finetune(pruned, ds, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                    seed=cfg.seed, callbacks=callbacks, say=say, what=what, teacher=teacher,
                    temperature=d.temperature, alpha=d.alpha)


def _teacher(model, cfg: PruneConfig):
    """The unpruned model as a distillation teacher (a copy: the distiller freezes it), or None."""
    return clone_with_weights(model) if cfg.recover == "distill" else None


def clone_with_weights(model):
    """A structurally identical, independent copy (fresh layers, same weights), nested models flattened."""
    new, _ = rebuild(model, {})
    return new


# --- structured channel pruning --------------------------------------------------------------------
def _kinds():
    import keras

    L = keras.layers
    passthrough = (L.BatchNormalization, L.ReLU, L.Activation, L.Dropout, L.SpatialDropout2D, L.ZeroPadding2D,
                   L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D,
                   L.DepthwiseConv2D, L.LeakyReLU, L.ELU, L.Softmax, L.Identity, L.GaussianNoise,
                   L.GaussianDropout, L.ActivityRegularization)
    return L, passthrough


def _is_producer(layer) -> bool:
    L, _ = _kinds()
    return type(layer) is L.Conv2D and layer.groups == 1


def rebuild(model, keep: dict):
    """Rebuild ``model`` as one flat functional model of fresh layers with weights copied.

    ``keep`` maps Conv2D layer names to the output-channel indices to keep; every layer downstream
    gets its per-channel weights sliced to match. Returns ``(model, blocked)`` where ``blocked`` is
    the set of conv names whose channels reach a layer that couples them (not prunable).
    """
    import keras
    from keras.src.models.functional import Functional

    L, passthrough = _kinds()
    kept: dict[int, np.ndarray | None] = {}  # id(new tensor) -> old channel indices it carries
    tags: dict[int, frozenset] = {}  # id(new tensor) -> producer convs whose channels it carries
    blocked: set = set()

    def idx_of(t):
        return kept.get(id(t))

    def op_fn(op):
        if isinstance(op, Functional):
            def run_nested(*args, **kwargs):
                return op._run_through_graph(args[0] if len(args) == 1 else list(args), op_fn)

            return run_nested

        if not isinstance(op, keras.layers.Layer):
            # A bare keras.ops operation (``x + y``, ``x * y`` in an application's graph): stateless,
            # reused as is; whatever channels reach it are coupled.
            def run_op(*args, **kwargs):
                ins = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
                for t in ins:
                    blocked.update(tags.get(id(t), frozenset()))
                    if idx_of(t) is not None:
                        raise ModelError(f"Channel pruning can't slice through operation {op.name!r}")
                return op(*args, **kwargs)

            return run_op

        def run(*args, **kwargs):
            kwargs.pop("training", None)
            kwargs.pop("mask", None)
            ins = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
            in_idx = [idx_of(t) for t in ins]
            in_tags = frozenset().union(*[tags.get(id(t), frozenset()) for t in ins]) if ins else frozenset()
            cfg = op.get_config()
            out_idx, out_tags = None, frozenset()
            slicer = None
            if _is_producer(op):
                ki = in_idx[0]
                ko = keep.get(op.name)
                if ko is not None:
                    cfg["filters"] = int(len(ko))
                out_idx, out_tags = ko, frozenset([op.name])

                def slicer(ws, ki=ki, ko=ko):
                    k = ws[0]
                    if ki is not None:
                        k = k[:, :, ki, :]
                    if ko is not None:
                        k = k[..., ko]
                    rest = [b[ko] if ko is not None else b for b in ws[1:]]
                    return [k, *rest]
            elif isinstance(op, passthrough) and not (isinstance(op, L.DepthwiseConv2D) and op.depth_multiplier != 1):
                ki = in_idx[0]
                out_idx, out_tags = ki, in_tags
                if isinstance(op, L.DepthwiseConv2D):
                    def slicer(ws, ki=ki):
                        if ki is None:
                            return ws
                        return [ws[0][:, :, ki, :], *[b[ki] for b in ws[1:]]]
                elif isinstance(op, L.BatchNormalization):
                    def slicer(ws, ki=ki):
                        return [w[ki] for w in ws] if ki is not None else ws
            elif isinstance(op, L.Dense) and ins and len(ins[0].shape) == 2:
                ki = in_idx[0]

                def slicer(ws, ki=ki):
                    return [ws[0][ki, :], *ws[1:]] if ki is not None else ws
            else:
                # Anything else couples or reshapes channels: what reaches it must stay whole.
                blocked.update(in_tags)
                if any(i is not None for i in in_idx):
                    raise ModelError(f"Channel pruning can't slice through layer {op.name!r} "
                                     f"({type(op).__name__}); it was not supposed to be pruned")
            new = op.__class__.from_config(cfg)
            out = new(*args, **kwargs)
            ws = [np.asarray(w) for w in op.get_weights()]
            if ws:
                new.set_weights(slicer(ws) if slicer else ws)
            for t in keras.tree.flatten(out):
                kept[id(t)] = out_idx
                tags[id(t)] = out_tags
            return out

        return run

    new_inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=t.name) for t in model.inputs]
    outs = model._run_through_graph(new_inputs if len(new_inputs) > 1 else new_inputs[0], op_fn)
    for t in keras.tree.flatten(outs):
        blocked.update(tags.get(id(t), frozenset()))
    new_model = keras.Model(new_inputs if len(new_inputs) > 1 else new_inputs[0], outs, name=model.name)
    return new_model, blocked


def prunable_convs(model) -> list[str]:
    """Names of the Conv2D layers whose output channels can be removed without touching a coupling."""
    flat, blocked = rebuild(model, {})
    names = [l.name for l in flat.layers if _is_producer(l)]
    return [n for n in names if n not in blocked]


def _following_bn(model, conv_name: str):
    """The BatchNormalization that directly consumes ``conv_name``'s output, if any."""
    import keras

    conv = model.get_layer(conv_name)
    for node in conv._outbound_nodes:
        if isinstance(node.operation, keras.layers.BatchNormalization):
            return node.operation
    return None


def rank_filters(model, conv_name: str, criterion: str = "l1") -> np.ndarray:
    """Filter importance scores, one per output channel (higher = keep)."""
    conv = model.get_layer(conv_name)
    if criterion == "bn":
        bn = _following_bn(model, conv_name)
        if bn is not None and bn.gamma is not None:
            return np.abs(np.asarray(bn.gamma.numpy()))
    k = np.asarray(conv.kernel.numpy())
    return np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0)


def channel_plan(model, ratio: float, criterion: str = "l1", min_channels: int = 4,
                 keep_counts: dict | None = None) -> dict:
    """For each prunable conv, the sorted indices of the filters to keep (``keep_counts`` overrides the
    number kept per layer name)."""
    plan = {}
    for name in prunable_convs(model):
        conv = model.get_layer(name)
        n = int(conv.filters)
        keep_n = max(min(min_channels, n), int(round(n * (1.0 - ratio))))
        if keep_counts is not None:
            keep_n = keep_counts.get(name, n)
        if keep_n >= n:
            continue
        scores = rank_filters(model, name, criterion)
        plan[name] = np.sort(np.argsort(-scores, kind="stable")[:keep_n])
    return plan


def channel_prune(model, ds, cfg: PruneConfig, say: Callable[[str], None] = lambda s: None):
    """Remove ``cfg.sparsity`` of the filters of every prunable conv, copy kept weights, fine-tune.

    With ``cfg.stages`` > 1 the cut comes in rounds: round i keeps ``(1 - sparsity) ** (i / stages)`` of each
    layer's filters (ranked again on the fine-tuned weights), and each round gets its share of the epochs.
    """
    cfg.validate()
    flat = clone_with_weights(model)  # names of nested layers become addressable
    final = channel_plan(flat, float(cfg.sparsity), cfg.criterion)
    if not final:
        raise ModelError(f"Channel pruning found no prunable Conv2D layers in {model.name!r} (every conv output "
                         "reaches a residual/concat/output coupling)")
    origin = {k: int(flat.get_layer(k).filters) for k in final}
    kept = {k: np.arange(n) for k, n in origin.items()}  # indices into the original filters
    before = int(flat.count_params())
    per_stage = [cfg.epochs // cfg.stages + (1 if i < cfg.epochs % cfg.stages else 0) for i in range(cfg.stages)]
    teacher = _teacher(model, cfg)
    current, history = flat, {}
    for i in range(cfg.stages):
        last = i == cfg.stages - 1
        counts = {k: len(v) if last else max(len(final[k]), int(round(origin[k] * (1.0 - cfg.sparsity)
                                                                       ** ((i + 1) / cfg.stages))))
                  for k, v in final.items()}
        plan = channel_plan(current, float(cfg.sparsity), cfg.criterion, keep_counts=counts)
        current, _ = rebuild(current, plan)
        for k, idx in plan.items():
            kept[k] = kept[k][idx]
        rnd = f", round {i + 1}/{cfg.stages}" if cfg.stages > 1 else ""
        say(f"channel pruning{rnd}: {len(plan)} conv layers thinned, parameters {before:,} -> "
            f"{int(current.count_params()):,}")
        if per_stage[i]:
            h = _recover(current, teacher, ds, replace(cfg, epochs=per_stage[i]), say,
                         f"fine-tune after {cfg.sparsity:.0%} channel pruning{rnd}")
            for key, vals in h.items():
                history.setdefault(key, []).extend(vals)
    after = int(current.count_params())
    info = {"mode": "channels", "target": float(cfg.sparsity), "criterion": cfg.criterion, "stages": cfg.stages,
            "layers": {k: {"from": origin[k], "to": int(len(v))} for k, v in kept.items()},
            "params_before": before, "params_after": after, "epochs": cfg.epochs, "recover": cfg.recover,
            "history": history, "kept": {k: v.tolist() for k, v in kept.items()}}
    return current, info


def prune(model, ds, cfg: PruneConfig, say: Callable[[str], None] = lambda s: None):
    """The prune step: ``(pruned keras model, info)``."""
    cfg.validate()
    return (magnitude_prune if cfg.mode == "magnitude" else channel_prune)(model, ds, cfg, say)
