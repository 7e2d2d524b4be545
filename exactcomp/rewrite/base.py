"""What the rewrite rules share: replacing a layer and its successor, and the constant network."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from exactcomp.ir.network import Dense, Network
from exactcomp.rewrite.skips import crossed, evaluate_from

def replace_pair(net: Network, pos: int, layer, nxt, skips=None) -> Network:
    layers = list(net.layers)
    layers[pos], layers[pos + 1] = layer, nxt
    return net.with_layers(layers, skips)


def check_hidden(net: Network, pos: int) -> None:
    if not 0 <= pos < len(net.layers) - 1:
        raise ValueError(f"layer position {pos} is not a hidden layer")


def constant_after(net: Network, pos: int) -> Network:
    """The constant network when hidden layer ``pos`` outputs ``h = 0``: the layers after it evaluated
    on zero; one layer with ``W = 0`` reading the whole input (a constant needs no selection)."""
    if crossed(net, pos):
        raise ValueError(f"a skip connection jumps over layer {pos}: the network is not constant")
    y = evaluate_from(net, pos, np.zeros((1, net.layers[pos].width)))
    last = net.layers[-1]
    constant = Dense(np.zeros((last.width, net.input_size)), y[0], last.layer_id, last.neuron_ids)
    return replace(net, layers=(constant,), input_indices=None, skips=())
