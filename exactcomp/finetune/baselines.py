"""The two baselines of ``exactcomp stabilize --sweep`` (issue 21), what a user would otherwise run on the same
model and data, for any ONNX graph :class:`~exactcomp.finetune.graph.TorchGraph` runs (dense, convolutional,
batch norm, pooling, residual).

**(a) L1 from scratch** (the NeurIPS 2021 paper's recipe, as ``models/train.py``): the same graph from a fresh
random initialisation, trained with Adam on

    loss = CE(z(x), y) + l1 · Σ_{W weight of a Gemm, MatMul or Conv} Σ_ij |W_ij|

with ``z`` the graph's first output. The initialisation is PyTorch's default: every weight and bias of a
Gemm/MatMul/Conv uniform in ±1/sqrt(fan_in) (kaiming-uniform with a = sqrt(5)), fan_in being the inputs of one
output unit (Gemm: B's rows, or its columns with transB; MatMul: W's second-last axis; Conv: C_in/group ·
kernel size); a Gemm's B and C are divided by |alpha| and |beta| so that the map itself is default-like.
BatchNormalization: γ = 1, β = 0, mean = 0, var = 1. A bias is a Gemm's C, a Conv's B, or a float
initializer added to a Gemm/MatMul/Conv output. Initializers are found through Identity nodes. Batch norm is
trained in the inference form the graph computes (γ, β trained; mean and var kept at 0 and 1, so a per-channel
affine map; no batch statistics). Other float initializers (normalisation constants, ...) are neither reset
nor trained.

**(b) Structured magnitude pruning**: a unit ``u`` (a feature or a channel: axis 1 of a Relu's output) scores
the L2 norm of its incoming weights,

    s_u = ‖W_u‖₂ · Π_k |f_k,u|

where ``W_u`` is its row of the nearest affine op before the Relu (Gemm: a row of B with transB, else a column,
times |alpha|; MatMul: a column of W; Conv: the output channel's kernel) and ``f_k`` the factors met on the way
(BatchNormalization: γ_u / sqrt(var_u + ε); Mul or Div by a constant per unit or scalar); biases (Add/Sub of a
constant), Identity, Dropout, Cast and poolings are passed through. Where no such op is found (a residual Add
of two branches, a Relu on the input, a MatMul on more than 2 axes, ...) the unit scores its mean activation
``mean_{x, positions} |a_u(x)|`` on the data given instead (up to 2,048 rows; also used when the traced norms
do not have one entry per unit of the Relu's output); without data that is an
:class:`~exactcomp.errors.UnsupportedOpError`. Lower scores are given up first (the format of
``exactcomp.finetune.train._scores``); scores are compared within one Relu node only.
"""

from __future__ import annotations

import math
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from exactcomp.errors import UnsupportedOpError
from exactcomp.finetune.graph import TorchGraph
from exactcomp.finetune.ops import OPS

_AFFINE = ("Gemm", "MatMul", "Conv")
_PASS = {"Identity", "Dropout", "Cast", "MaxPool", "AveragePool", "GlobalAveragePool"}   # keep the units of axis 1
_BN_ROLES = ("bn_scale", "bn_bias", "bn_mean", "bn_var")
_FILL = {"bn_scale": 1.0, "bn_bias": 0.0, "bn_mean": 0.0, "bn_var": 1.0}


def _roles(graph: TorchGraph) -> dict:
    """``{float initializer: (role, fan_in, factor)}`` in node order; role one of weight, bias, bn_scale, bn_bias,
    bn_mean, bn_var (a batch-norm statistic wins over any other role of the same initializer); ``factor``
    scales the ±1/sqrt(fan_in) range (1/|alpha|, 1/|beta| for a Gemm)."""
    alias = {n.output[0]: n.input[0] for n in graph.nodes if n.op_type == "Identity"}
    roles, fan_ins = {}, {}   # fan_ins: output of an affine node -> its fan_in

    def source(name):
        while name in alias:
            name = alias[name]
        return name if name in graph._keys else None

    def put(name, role, fan_in=0, factor=1.0):
        key = source(name) if name else None
        if key is not None and (key not in roles or role in ("bn_mean", "bn_var")):
            roles[key] = (role, fan_in, factor)

    for node, attrs in zip(graph.nodes, graph.attributes):
        op, ins = node.op_type, list(node.input)
        weight = next((k for k in (1, 0) if op in _AFFINE and len(ins) > k and source(ins[k])), None)
        if weight is not None and (op == "MatMul" or weight == 1):
            shape = graph.parameter(source(ins[weight])).shape
            if op == "Conv":
                fan_in, scale = int(np.prod(shape[1:])), (1.0, 1.0)
            elif op == "Gemm":
                fan_in = shape[1] if attrs.get("transB", 0) else shape[0]
                scale = tuple(1 / abs(attrs.get(a, 1.0)) if attrs.get(a, 1.0) else 1.0 for a in ("alpha", "beta"))
            else:
                fan_in, scale = shape[-2] if weight == 1 else shape[-1], (1.0, 1.0)
            put(ins[weight], "weight", fan_in, scale[0])
            if op != "MatMul" and len(ins) > 2:
                put(ins[2], "bias", fan_in, scale[1])
            fan_ins[node.output[0]] = fan_in
        elif op == "BatchNormalization":
            for name, role in zip(ins[1:5], _BN_ROLES):
                put(name, role)
        elif op == "Add" and len(ins) == 2:
            for a, b in (ins, ins[::-1]):
                if a in fan_ins and source(b):
                    put(b, "bias", fan_ins[a])
    return roles


def reinitialized(graph: TorchGraph, seed: int) -> None:
    """Fresh random weights in place, as the module doc says (PyTorch's default initialisation); ``seed`` fixes
    them. Only the weights, biases and batch-norm parameters of the graph's layers change."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, (role, fan_in, factor) in _roles(graph).items():
            p = graph.parameter(name)
            if role in _FILL:
                p.fill_(_FILL[role])
            else:
                bound = factor / math.sqrt(max(fan_in, 1))
                p.copy_((2 * torch.rand(p.shape, generator=gen, dtype=torch.float64) - 1) * bound)


def train_l1_from_scratch(model: onnx.ModelProto, data, labels, l1: float, epochs: int, seed: int = 0,
                          lr: float = 1e-3, batch: int = 64, deadline: float | None = None, progress=None,
                          device=None) -> dict[str, np.ndarray]:
    """Baseline (a) of the module doc: ``model``'s graph reinitialised with ``seed`` and trained ``epochs`` epochs
    on ``data`` (rows shaped like its input) and integer ``labels``. ``deadline``: a ``time.perf_counter()`` value
    after which training stops (before the next step); ``progress(entry)`` after each epoch, with ``epoch``,
    ``loss`` (mean over its steps), ``l1_norm`` (Σ|W|) and ``seconds``; ``device``: where to train (None: CPU).
    Returns ``initializer_values()``."""
    t0 = time.perf_counter()
    graph = TorchGraph(model)
    reinitialized(graph, seed)
    graph.to(device or "cpu")
    roles = _roles(graph)
    trained = [graph.parameter(n) for n, (role, _, _) in roles.items() if role not in ("bn_mean", "bn_var")]
    weights = [graph.parameter(n) for n, (role, _, _) in roles.items() if role == "weight"]
    for p in graph.parameters():
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    X, y = _tensor(data, graph), torch.as_tensor(np.asarray(labels, np.int64)).to(device or "cpu")
    opt = torch.optim.Adam(trained, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        perm, total, steps = torch.randperm(len(X), generator=gen), 0.0, 0
        for i in range(0, len(X), batch):
            if deadline is not None and time.perf_counter() > deadline:
                return graph.initializer_values()
            idx = perm[i:i + batch]
            loss = F.cross_entropy(graph(X[idx])[0], y[idx]) + l1 * _l1(weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
        if progress is not None:
            with torch.no_grad():
                progress({"epoch": epoch + 1, "loss": total / max(steps, 1), "l1_norm": float(_l1(weights)),
                          "seconds": time.perf_counter() - t0})
    return graph.initializer_values()


def _l1(weights) -> torch.Tensor:
    return sum((w.abs().sum() for w in weights), torch.zeros((), dtype=torch.float64))


def _tensor(data, graph: TorchGraph) -> torch.Tensor:
    """``data`` as float64 on the graph's device."""
    device = next(graph.parameters()).device if list(graph.parameters()) else "cpu"
    return (data if torch.is_tensor(data) else torch.from_numpy(np.asarray(data))).detach().to(device, torch.float64)


def _static(graph: TorchGraph) -> dict:
    """Every tensor that does not depend on the graph's input: initializers, Constants, what is computed from them."""
    values = {name: value.detach() for name, value in graph.tensors().items()}
    with torch.no_grad():
        for node, attrs in zip(graph.nodes, graph.attributes):
            if all(not i or i in values for i in node.input):
                out = OPS[node.op_type]([values[i] if i else None for i in node.input], attrs)
                values.update((o, v) for o, v in zip(node.output, out if isinstance(out, tuple) else (out,)) if o)
    return values


def _weight_norm(op: str, w: torch.Tensor, attrs: dict):
    """Per output unit the L2 norm of the affine op's weights, and the rank of its output (None: not 2-D)."""
    if op == "Conv":
        return w.reshape(w.shape[0], -1).norm(dim=1), w.dim()
    if w.dim() != 2:
        return None, 0
    if op == "MatMul":
        return w.norm(dim=0), 2
    return w.norm(dim=1 if attrs.get("transB", 0) else 0) * abs(attrs.get("alpha", 1.0)), 2


def _per_unit(f: torch.Tensor, rank: int):
    """A constant broadcast against an output of ``rank`` axes as one value per unit of axis 1 (or a scalar);
    None if it varies along another axis."""
    if f.numel() == 1:
        return f.reshape(())
    shape = (1,) * (rank - f.dim()) + tuple(f.shape)
    if f.dim() > rank or any(s != 1 for k, s in enumerate(shape) if k != 1):
        return None
    return f.reshape(-1)


def _traced_norm(graph: TorchGraph, name: str, static: dict, producer: dict):
    """``s_u`` of the module doc for the units of tensor ``name`` (a Relu's input), or None if not traceable."""
    factors = []   # (|factor|, already one value per unit)
    while name in producer:
        node, attrs = graph.nodes[producer[name]], graph.attributes[producer[name]]
        op, ins = node.op_type, list(node.input)
        data = [k for k, i in enumerate(ins) if i and i not in static]
        if len(data) != 1:
            return None
        d = data[0]
        if op in _PASS and d == 0 or op in ("Add", "Sub"):
            pass
        elif op == "Mul" or op == "Div" and d == 0:
            c = static[ins[1 - d]].to(torch.float64).abs()
            factors.append((1 / c if op == "Div" else c, False))
        elif op == "BatchNormalization" and d == 0:
            scale, var = static[ins[1]], static[ins[4]]
            factors.append(((scale / torch.sqrt(var + attrs.get("epsilon", 1e-5))).abs(), True))
        elif op in _AFFINE and d == 0:
            norm, rank = _weight_norm(op, static[ins[1]].to(torch.float64), attrs)
            for f, per_unit in factors if norm is not None else ():
                f = f if per_unit else _per_unit(f, rank)
                if f is None or f.numel() not in (1, norm.numel()):
                    return None
                norm = norm * f
            return None if norm is None else norm.cpu().numpy()
        else:
            return None
        name = ins[d]
    return None


def _mean_activations(graph: TorchGraph, data, rows: int = 2048, batch: int = 256) -> dict:
    """Per Relu node and unit, ``mean_{x, positions} |a_u(x)|`` over the first ``rows`` rows of ``data``."""
    X = _tensor(data[:rows], graph)
    sums = {}
    graph.keep_activations = True
    try:
        with torch.no_grad():
            for i in range(0, len(X), batch):
                graph(X[i:i + batch])
                for name, a in zip(graph.relu_names, graph.activations):
                    mean = a.abs().reshape(a.shape[0], a.shape[1], -1).mean(dim=2).sum(dim=0)
                    sums[name] = sums.get(name, 0) + mean
    finally:
        graph.keep_activations, graph.activations = False, []
    return {name: (s / len(X)).cpu().numpy() for name, s in sums.items()}


def incoming_norms(graph: TorchGraph, data=None) -> dict[str, np.ndarray]:
    """``{relu node name: s_u per unit}`` as the module doc says: incoming weight norms, or the mean activation
    on ``data`` (rows shaped like the input) where no affine op feeds the Relu. Raises
    :class:`~exactcomp.errors.UnsupportedOpError` when that is needed and ``data`` is None."""
    static = _static(graph)
    producer = {o: i for i, node in enumerate(graph.nodes) for o in node.output if o}
    relus = [node for node in graph.nodes if node.op_type == "Relu"]
    norms = {name: _traced_norm(graph, node.input[0], static, producer) for name, node in zip(graph.relu_names, relus)}
    if data is None:
        missing = [name for name, v in norms.items() if v is None]
        if missing:
            raise UnsupportedOpError(f"Relu {', '.join(map(repr, missing))}: no Gemm, MatMul or Conv found before it "
                                     "(e.g. a residual Add of two branches); pass data to score its units by their "
                                     "mean activation")
        return norms
    activations = _mean_activations(graph, data)
    return {name: v if v is not None and v.shape == activations[name].shape else activations[name]
            for name, v in norms.items()}


def magnitude_scores(graph: TorchGraph, data=None) -> dict[str, np.ndarray]:
    """Baseline (b)'s importance of each unit, in the format of ``exactcomp.finetune.train._scores``
    (``{relu node name: one score per unit}``, lower given up first): :func:`incoming_norms`."""
    return incoming_norms(graph, data)
