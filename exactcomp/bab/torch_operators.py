"""Network layers as torch linear operators, for the batched bounds of branch and bound (:mod:`exactcomp.bab.engine`).

The torch engine needs of a layer ``g = A(h) + b`` only its bias ``b`` and the transpose map
``λ ↦ λ A`` on a batch of coefficient rows (back-substitution). Each layer type registers a class
here (:data:`TORCH_OPERATORS`); a convolution's is the transposed convolution.
"""

from __future__ import annotations

import numpy as np

from exactcomp.ir.conv import Conv
from exactcomp.ir.maxpool import PoolCarry, PoolLevel
from exactcomp.ir.network import Dense
from exactcomp.ir.pool import Pooled
from exactcomp.ir.select import Selected
from exactcomp.ir.skip import Embed, Shift


class TorchDense:
    """A dense layer as the engine's linear operator: its bias ``b`` and ``λ ↦ λ W`` on a batch."""

    def __init__(self, layer, device):
        import torch

        self.W = torch.as_tensor(np.array(layer.W, dtype=np.float64), device=device)
        self.b = torch.as_tensor(np.array(layer.b, dtype=np.float64), device=device)

    def apply_transpose(self, lam):
        return lam @ self.W


class TorchConv:
    """A convolution as the engine's linear operator: ``λ ↦ λ M`` is the transposed convolution.

    ``λ`` (a batch of rows over the ``(C_out, H_out, W_out)`` outputs) goes through
    ``conv_transpose2d`` with no padding, which gives the form on the zero-padded input; cropping the
    padding (taps on padding zeros contribute nothing) and any rows/columns the stride never reached
    gives the form on ``h``.
    """

    def __init__(self, layer, device):
        import torch

        self.layer = layer
        self.kernel = torch.as_tensor(np.array(layer.kernel, dtype=np.float64), device=device)
        self.b = torch.as_tensor(np.array(layer.b, dtype=np.float64), device=device)

    def apply_transpose(self, lam):
        import torch.nn.functional as F

        layer = self.layer
        c_in, H, W = layer.in_shape
        top, left, bottom, right = layer.pads
        batch = lam.shape[:-1]
        out = F.conv_transpose2d(lam.reshape(-1, *layer.out_shape), self.kernel, stride=layer.stride,
                                 dilation=layer.dilation, groups=layer.groups)
        full_h, full_w = H + top + bottom, W + left + right
        out = F.pad(out, (0, max(0, full_w - out.shape[-1]), 0, max(0, full_h - out.shape[-2])))
        out = out[..., top:top + H, left:left + W]
        if layer.channels_last:
            out = out.permute(0, 2, 3, 1)
        return out.reshape(*batch, c_in * H * W)


class TorchEmbed:
    """An identity shortcut (:class:`exactcomp.ir.skip.Embed`): ``λ ↦ λ E`` moves coefficients to the inputs."""

    def __init__(self, op, device):
        import torch

        self.op = op
        self.b = torch.zeros(op.width, dtype=torch.float64, device=device)
        self.in_index = torch.as_tensor(np.array(op.in_index, dtype=np.int64), device=device)
        self.out_index = torch.as_tensor(np.array(op.out_index, dtype=np.int64), device=device)

    def apply_transpose(self, lam):
        out = lam.new_zeros((*lam.shape[:-1], self.op.fan_in))
        return out.index_add(-1, self.in_index, lam.index_select(-1, self.out_index))


class TorchPooled:
    """Average pooling then a dense layer or convolution ``X`` (:class:`exactcomp.ir.pool.Pooled`):
    ``λ ↦ ((λ X) ⊙ 1/count)`` through the transposed all-ones depthwise convolution."""

    def __init__(self, layer, device):
        import torch

        self.inner = torch_operator(layer.inner, device)
        self.window = TorchConv(layer.pool.window, device)
        self.scale = torch.as_tensor(np.asarray(layer.pool.scale, dtype=np.float64), device=device)
        self.b = self.inner.b

    def apply_transpose(self, lam):
        return self.window.apply_transpose(self.inner.apply_transpose(lam) * self.scale)


class TorchShift(TorchEmbed):
    """A shortcut plus a bias as a layer's main op (:class:`exactcomp.ir.skip.Shift`)."""

    def __init__(self, op, device):
        import torch

        super().__init__(op.embed, device)
        self.b = torch.as_tensor(np.array(op.bias, dtype=np.float64), device=device)


class TorchSparse:
    """A ``scipy.sparse`` map ``M`` (max-pooling comparisons :class:`exactcomp.ir.maxpool.PoolLevel`):
    ``λ ↦ λ M`` scatters ``M``'s entries, ``out[..., j] += M[i, j] λ[..., i]``."""

    def __init__(self, M, width: int, device):
        import torch

        coo = M.tocoo()
        self.fan_in = M.shape[1]
        self.rows = torch.as_tensor(coo.row.astype(np.int64), device=device)
        self.cols = torch.as_tensor(coo.col.astype(np.int64), device=device)
        self.data = torch.as_tensor(coo.data.astype(np.float64), device=device)
        self.b = torch.zeros(width, dtype=torch.float64, device=device)

    def apply_transpose(self, lam):
        out = lam.new_zeros((*lam.shape[:-1], self.fan_in))
        return out.index_add(-1, self.cols, lam.index_select(-1, self.rows) * self.data)


def _torch_pool_level(layer, device):
    return TorchSparse(layer.matrix(), layer.width, device)


class TorchPoolCarry:
    """The values a max pooling carries, read by an op ``X`` (:class:`exactcomp.ir.maxpool.PoolCarry`):
    ``λ ↦ (λ X) S``, ``X``'s own operator then the selection's scatter."""

    def __init__(self, op, device):
        self.inner = torch_operator(op.inner, device)
        self.select = TorchSparse(op.select, op.inner.fan_in, device)
        self.b = self.inner.b.new_zeros(op.width)

    def apply_transpose(self, lam):
        return self.select.apply_transpose(self.inner.apply_transpose(lam))


class TorchSelected:
    """A selection then an op ``X`` (:class:`exactcomp.ir.select.Selected`): ``λ ↦ (λ X) S``, ``X``'s operator then
    a scatter-add of its columns to the selected entries."""

    def __init__(self, op, device):
        import torch

        self.inner = torch_operator(op.inner, device)
        self.index = torch.as_tensor(np.array(op.index, dtype=np.int64), device=device)
        self.fan_in = op.fan_in
        self.b = self.inner.b

    def apply_transpose(self, lam):
        mu = self.inner.apply_transpose(lam)
        return mu.new_zeros((*mu.shape[:-1], self.fan_in)).index_add(-1, self.index, mu)


#: Layer type -> its torch operator class (the plug-in point for convolutions and other affine ops).
TORCH_OPERATORS = {Dense: TorchDense, Conv: TorchConv, Embed: TorchEmbed, Pooled: TorchPooled,
                   PoolLevel: _torch_pool_level, PoolCarry: TorchPoolCarry, Shift: TorchShift, Selected: TorchSelected}


def torch_operator(layer, device):
    """The torch linear operator of a network layer (:data:`TORCH_OPERATORS`: its class's, or its nearest base
    class's: a 1-D convolution is bounded as the 2-D one it lifts to)."""
    make = next((TORCH_OPERATORS[c] for c in type(layer).__mro__ if c in TORCH_OPERATORS), None)
    if make is None:
        raise TypeError(f"branch and bound has no torch operator for layer type {type(layer).__name__}")
    return make(layer, device)
