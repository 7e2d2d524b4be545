"""Given-up units written as structurally dead: incoming weights 0 and a constant pre-activation of -1.

A unit ``u`` that the round proved dead over the domain (interval upper bound of its pre-activation ``<= -δ``)
outputs 0 on every point of the domain. Setting its pre-activation to the constant ``-1`` (the incoming
weights of the affine op that produces it to 0, its bias to -1; or, with a batch normalisation between, that
unit's scale to 0 and shift to -1) keeps it at 0 there, so the function on the domain does not change. Any
verifier then sees the unit dead at once, whatever its bounds: ``exactcomp compress`` lowers max pooling into
comparisons (``v + relu(u - v)``), whose relaxation is looser than the interval of a max, and could leave such
units unknown.

The walk from a Relu back to the producer passes ops that keep axis 1 and map a constant -1 channel to a
negative constant (Identity, Dropout, max and average pooling) and an Add of a per-unit bias; a Relu fed by
anything else (a residual Add of two branches, a reshape, ...) is left as trained. An initializer used by
more than one node is left alone.
"""

from __future__ import annotations

from collections import Counter

import torch

_PASS = {"Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}


def make_dead(graph, masks: dict) -> int:
    """Write the units with ``masks[relu] == 0`` as structurally dead, in place in ``graph``'s weights (as the
    module doc says). Returns how many units were written so."""
    producer = {o: i for i, node in enumerate(graph.nodes) for o in node.output if o}
    alias = {n.output[0]: n.input[0] for n in graph.nodes if n.op_type == "Identity"}
    uses = Counter(_source(i, alias) for node in graph.nodes for i in node.input if i)
    relus = [node for node in graph.nodes if node.op_type == "Relu"]
    done = 0
    with torch.no_grad():
        for name, node in zip(graph.relu_names, relus):
            mask = masks.get(name)
            units = torch.nonzero(mask == 0).flatten() if mask is not None else torch.zeros(0, dtype=torch.long)
            if len(units) and _write_dead(graph, node.input[0], units, len(mask), producer, alias, uses):
                done += len(units)
    return done


def make_dead_checked(graph, masks: dict, X) -> str | None:
    """:func:`make_dead`, checked on rows ``X`` of the domain (the graph without masks): the logits must not move,
    since the units were proven dead there; if they do, the weights are restored and a warning returned."""
    with torch.no_grad():
        before = graph(X)[0]
        saved = {name: p.detach().clone() for name, p in graph.weights.items()}
        make_dead(graph, masks)
        moved = float((graph(X)[0] - before).abs().max())
        if moved > 1e-9 * (1 + float(before.abs().max())):
            for name, p in graph.weights.items():
                p.copy_(saved[name])
            return (f"writing the given-up units as dead moved the validation logits by {moved:.2e}; "
                    "kept them as trained")
    return None


def _source(name, alias):
    while name in alias:
        name = alias[name]
    return name


def _param(graph, name, alias, uses):
    """The trainable initializer behind ``name`` when only one node reads it, else None."""
    key = _source(name, alias)
    return graph.parameter(key) if key in graph._keys and uses[key] == 1 else None


def _write_dead(graph, tensor, units, width: int, producer, alias, uses) -> bool:
    """Walk back from the Relu's input ``tensor`` (``width`` units) to what can hold the constant -1."""
    bias = None   # a per-unit bias added on the way (Add of an initializer)
    while tensor in producer:
        index = producer[tensor]
        node, attrs = graph.nodes[index], graph.attributes[index]
        op, ins = node.op_type, list(node.input)
        if op in _PASS:
            tensor = ins[0]
        elif op == "Add" and len(ins) == 2 and bias is None:
            params = [_param(graph, i, alias, uses) for i in ins]
            k = next((k for k in (0, 1) if params[k] is not None), None)
            if k is None or params[1 - k] is not None:
                return False   # two data branches (a residual sum), or a sum of constants
            if params[k].numel() != width:
                return False
            bias, tensor = params[k], ins[1 - k]
        elif op == "BatchNormalization":
            scale, shift = (_param(graph, i, alias, uses) for i in ins[1:3])
            if bias is not None or scale is None or shift is None or scale.numel() != width:
                return False
            scale[units], shift[units] = 0.0, -1.0
            return True
        elif op in ("Gemm", "Conv", "MatMul"):
            return _affine(graph, op, ins, attrs, units, width, bias, alias, uses)
        else:
            return False
    return False


def _affine(graph, op, ins, attrs, units, width, bias, alias, uses) -> bool:
    """Zero the units' incoming weights; the constant -1 goes in the Add's bias if there is one, else the op's."""
    weight = _param(graph, ins[1], alias, uses) if len(ins) > 1 else None
    own = _param(graph, ins[2], alias, uses) if op != "MatMul" and len(ins) > 2 and ins[2] else None
    beta = attrs.get("beta", 1.0) if op == "Gemm" else 1.0
    if weight is None or _param(graph, ins[0], alias, uses) is not None or (own is not None and own.numel() != width):
        return False   # the data must come in first (x W, W x^T), a bias must hold one value per unit
    if bias is None and (own is None or beta <= 0):
        return False
    if op == "Conv":
        weight[units] = 0.0
    elif op == "MatMul" and weight.dim() == 2:
        weight[:, units] = 0.0
    elif op == "Gemm" and weight.dim() == 2:
        if attrs.get("transB", 0):
            weight[units] = 0.0
        else:
            weight[:, units] = 0.0
    else:
        return False
    if bias is not None:
        bias.view(-1)[units] = -1.0
        if own is not None:
            own.view(-1)[units] = 0.0
    else:
        own.view(-1)[units] = -1.0 / beta
    return True
