"""Naming neurons the way the model does: ``(node, channel, position)``.

The analysis indexes a neuron by ``(layer id, index)``: hidden layer ``layer_id`` of the imported network
(1-based, as in reports) and its flat index there. Users think of the ONNX node that produced it and,
for a convolution, of the channel and the ``(y, x)`` position in its ``(C, H, W)`` output (flat index
``(c · H + y) · W + x``). :func:`neuron_address` maps one way, :func:`find_neuron` the other. The comparison neurons
of a max pooling (:mod:`exactcomp.ir.maxpool`) are addressed by their pooling node, ``level`` and index.
"""

from __future__ import annotations

from dataclasses import dataclass

from exactcomp.errors import ExactcompError


@dataclass(frozen=True)
class NeuronAddress:
    """Where neuron ``index`` of layer ``layer_id`` sits: ``node`` (the ONNX ``Relu`` ending its layer, or
    the ``MaxPool`` of a comparison neuron; None if not imported from ONNX), ``kind`` (dense, conv, maxpool),
    for a convolution its ``channel`` and ``position`` ``(y, x)``, for a comparison neuron its ``level``."""

    layer_id: int
    index: int
    node: str | None
    kind: str
    channel: int | None = None
    position: tuple[int, int] | None = None
    level: int | None = None


def _layer(network, layer_id: int):
    for layer in network.hidden:
        if layer.layer_id == layer_id:
            return layer
    raise ExactcompError(f"the network has no hidden layer {layer_id} "
                         f"(hidden layers: {', '.join(str(x.layer_id) for x in network.hidden)})")


def neuron_address(network, layer_id: int, index: int) -> NeuronAddress:
    """The :class:`NeuronAddress` of neuron ``index`` (original index, as in reports) of hidden layer ``layer_id``."""
    from exactcomp.ir.maxpool import PoolLevel
    from exactcomp.ir.pool import conv_of

    layer = _layer(network, layer_id)
    ids = list(layer.neuron_ids)
    if index not in ids:
        raise ExactcompError(f"layer {layer_id} has no neuron {index} (it has {len(ids)}, "
                             f"original indices {min(ids, default=0)}..{max(ids, default=-1)})")
    node = network.metadata.get("relu_nodes", {}).get(layer_id)
    if isinstance(layer, PoolLevel):
        return NeuronAddress(layer_id, index, node, "maxpool", level=layer.level)
    if conv_of(layer) is not None:
        _, H, W = conv_of(layer).out_shape
        return NeuronAddress(layer_id, index, node, "conv", index // (H * W), divmod(index % (H * W), W))
    return NeuronAddress(layer_id, index, node, "dense")


def find_neuron(network, node: str, channel: int | None = None, position: tuple[int, int] | None = None,
           index: int | None = None) -> tuple[int, int]:
    """``(layer id, index)`` of the neuron a user names: the ``node`` ending its layer (a ``Relu``'s name or
    output), then for a convolution ``channel`` and ``position`` ``(y, x)``, else ``index`` (for the
    comparison neurons of a ``MaxPool`` node, the first level's layer)."""
    from exactcomp.ir.pool import conv_of

    names = network.metadata.get("relu_nodes", {})
    ids = [i for i, name in names.items() if name == node]
    if not ids:
        raise ExactcompError(f"no layer ends with node '{node}' (nodes: {', '.join(sorted(set(names.values())))})")
    layer_id = min(ids)
    layer = _layer(network, layer_id)
    if conv_of(layer) is not None and index is None:
        if channel is None or position is None:
            raise ExactcompError(f"node '{node}' is a convolution: give a channel and a position (y, x)")
        _, H, W = conv_of(layer).out_shape
        y, x = position
        if not (channel >= 0 and 0 <= y < H and 0 <= x < W):
            raise ExactcompError(f"channel {channel}, position {tuple(position)} is outside the {H}x{W} output of '{node}'")
        index = (channel * H + y) * W + x
    if index is None:
        raise ExactcompError(f"node '{node}' ends a dense layer: give the neuron's index")
    neuron_address(network, layer_id, index)   # checks that the neuron exists
    return layer_id, int(index)
