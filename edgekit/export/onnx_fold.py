"""Graph fixes after tf2onnx: fold per-channel affine ops into Convs; rewrite ops ONNX does not have.

Folding per-channel affine ops that follow a Conv into the Conv's weights and bias:

tf2onnx folds BatchNorm into regular convolutions but leaves it as ``Mul`` + ``Add`` after depthwise ones
(Keras 3 exports depthwise BN as separate ops). Those constants are dense, cost file size (they hurt the gzip
size of sparse models most) and, in int8, each op gets its own quantize/dequantize pair. Folding is exact up
to float rounding:

    (conv(x, W) + B) * s + b  ==  conv(x, W * s) + (B * s + b)      (s, b per output channel)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def _per_channel(arr: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """``arr`` as a (channels,) vector if it broadcasts along axis 1 of a rank-``rank`` NC... tensor only."""
    if arr.size == 1:
        return np.full(channels, arr.reshape(()).item(), dtype=arr.dtype)
    if arr.ndim > rank or arr.size != channels:
        return None
    shape = (1,) * (rank - arr.ndim) + tuple(arr.shape)  # numpy aligns trailing axes
    if shape[1] != channels or any(d != 1 for i, d in enumerate(shape) if i != 1):
        return None
    return arr.reshape(channels)


def fold_conv_affine(model) -> int:
    """Fold ``Conv → Mul(const) → Add(const)`` chains (either op may be missing) in place; return how many."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    users = defaultdict(list)  # tensor -> the nodes reading it, once per input slot
    for n in g.node:
        for name in n.input:
            users[name].append(n)
    graph_outputs = {o.name for o in g.output}

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def only_consumer(tensor):
        u = users.get(tensor, [])
        return u[0] if len(u) == 1 and tensor not in graph_outputs else None

    def affine_operand(node):
        a, b = node.input
        if b in inits:
            return b
        if a in inits:
            return a
        return None

    folded, dead, new_inits, used_names = 0, set(), [], _names(g)
    for conv in list(g.node):
        if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in inits:
            continue
        if inits[conv.input[1]].data_type != 1:  # float32 weights only (not already quantized)
            continue
        W = const(conv.input[1]).astype(np.float64)
        C, rank = W.shape[0], W.ndim
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        if has_bias and conv.input[2] not in inits:
            continue
        B = const(conv.input[2]).astype(np.float64) if has_bias else np.zeros(C)
        found: dict[str, np.ndarray] = {}
        tail, out = [], conv.output[0]
        nxt = only_consumer(out)
        for op_type in ("Mul", "Add"):  # in this order: (conv * s) + b
            if nxt is None or nxt.op_type != op_type or (operand := affine_operand(nxt)) is None:
                continue
            v = _per_channel(const(operand), rank, C)
            if v is None:
                break
            found[op_type] = v.astype(np.float64)
            tail.append(nxt)
            out = nxt.output[0]
            nxt = only_consumer(out)
        scale, shift = found.get("Mul", np.ones(C)), found.get("Add", np.zeros(C))
        if not tail:
            continue
        W2 = (W * scale.reshape((C,) + (1,) * (rank - 1))).astype(np.float32)
        B2 = (B * scale + shift).astype(np.float32)
        base = conv.name or conv.output[0]
        wn, bn = _fresh(f"{base}/W_folded", used_names), _fresh(f"{base}/B_folded", used_names)
        new_inits += [numpy_helper.from_array(W2, wn), numpy_helper.from_array(B2, bn)]
        x = conv.input[0]
        del conv.input[:]
        conv.input.extend([x, wn, bn])
        conv.output[0] = out
        dead.update(n.output[0] for n in tail)
        folded += 1
    if not folded:
        return 0
    kept = [n for n in g.node if not (len(n.output) == 1 and n.output[0] in dead and n.op_type in ("Mul", "Add"))]
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(new_inits)
    _drop_unused_initializers(model)
    return folded


def _names(g) -> set:
    """Every tensor name in the graph, so that new ones cannot collide with any of them."""
    return ({i.name for i in g.initializer} | {v.name for v in g.input} | {v.name for v in g.output}
            | {o for n in g.node for o in n.output})


def _fresh(name: str, used: set) -> str:
    out, i = name, 1
    while out in used:
        out, i = f"{name}_{i}", i + 1
    used.add(out)
    return out


def _drop_unused_initializers(model) -> None:
    g = model.graph
    used = {x for n in g.node for x in n.input} | {o.name for o in g.output}
    for sub in (a.g for n in g.node for a in n.attribute if a.g is not None and a.g.ByteSize()):
        used |= {x for n in sub.node for x in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def replace_erfc(model) -> int:
    """Rewrite ``Erfc(x)`` as ``1 - Erf(x)``; return how many.

    Keras 3's exact GELU is ``0.5 * x * erfc(-x / sqrt(2))``; tf2onnx passes TensorFlow's ``Erfc`` through
    unconverted, and no ONNX opset has it, so every transformer of the zoo failed ``onnx.checker``.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    nodes, n, used = [], 0, _names(g)
    one = None
    for node in g.node:
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        if one is None:
            one = _fresh("erfc_one", used)
            g.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
        erf = _fresh(f"{node.output[0]}/erf", used)
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf], name=f"{node.name}/Erf"))
        nodes.append(helper.make_node("Sub", [one, erf], [node.output[0]], name=f"{node.name}/OneMinus"))
        n += 1
    if n:
        del g.node[:]
        g.node.extend(nodes)
    return n
