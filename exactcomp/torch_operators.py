"""Network layers as torch linear operators, for the batched bounds of branch and bound (:mod:`exactcomp.bab`).

The torch engine needs of a layer ``g = A(h) + b`` only its bias ``b`` and the transpose map
``λ ↦ λ A`` on a batch of coefficient rows (back-substitution). Each layer type registers a class
here (:data:`TORCH_OPERATORS`); a convolution's would be the transposed convolution.
"""

from __future__ import annotations

import numpy as np


class TorchDense:
    """A dense layer as the engine's linear operator: its bias ``b`` and ``λ ↦ λ W`` on a batch."""

    def __init__(self, layer, device):
        import torch

        self.W = torch.as_tensor(np.array(layer.W, dtype=np.float64), device=device)
        self.b = torch.as_tensor(np.array(layer.b, dtype=np.float64), device=device)

    def apply_transpose(self, lam):
        return lam @ self.W


#: Layer type name -> its torch operator class (the plug-in point for convolutions and other affine ops).
TORCH_OPERATORS = {"Dense": TorchDense}


def torch_operator(layer, device):
    """The torch linear operator of a network layer (:data:`TORCH_OPERATORS`)."""
    kind = type(layer).__name__
    if kind not in TORCH_OPERATORS:
        raise TypeError(f"branch and bound has no torch operator for layer type {kind}")
    return TORCH_OPERATORS[kind](layer, device)
