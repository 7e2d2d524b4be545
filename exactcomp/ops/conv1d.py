"""1-D convolution (ONNX ``Conv`` with a 3-D weight over ``[N, C, L]``, as in audio and time-series models).

The maths is that of the 2-D convolution it lifts to: a kernel ``K[o, c, t]`` over the length ``L`` is the
kernel ``K[o, c, 0, t]`` over a ``(C, 1, L)`` image, with strides ``(1, s)``, pads ``(0, p_0, 0, p_1)`` and
dilations ``(1, d)``; flattened channel-major, ``(C, L)`` and ``(C, 1, L)`` are the same vector, so

    g[o, x] = bias[o] + Σ_{c ∈ group(o), t} K[o, c, t] · h_pad[c_g, s x + d t]

is :class:`~exactcomp.ir.conv.Conv`'s formula with ``H = 1``. :class:`Conv1d` is therefore a ``Conv``: bounds,
formulations, witnesses, branch and bound (torch operator of its base class) and the rewrite rules (dead
channels removed, constant ones folded) apply unchanged, and keep the class. What is its own: the ONNX
node it reads (:func:`read_conv1d`), the nodes it writes (:func:`write_conv1d`: a 1-D ``Conv`` again), the
per-sample shape of its output tensor (``(C', L')``, :attr:`Conv1d.value_shape`) and its ``inspect`` line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exactcomp.errors import UnsupportedOpError
from exactcomp.io.onnx_conv import CONV_READERS, conv_spec
from exactcomp.io.onnx_nodes import CONV_WRITERS, NAME_PREFIX, GraphBuilder
from exactcomp.ir.conv import Conv


@dataclass(frozen=True, eq=False)
class Conv1d(Conv):
    """A 1-D convolution held as the 2-D :class:`Conv` over ``(C, 1, L)`` it equals (module doc)."""

    @property
    def value_shape(self) -> tuple[int, int]:
        """``(C', L')``: the per-sample shape of the ONNX tensor a 1-D ``Conv`` outputs."""
        channels, _, length = self.out_shape
        return channels, length

    def describe(self) -> str:
        """The ``inspect`` line: ``conv1d CxL -> C'xL' kK sS pP`` (ONNX attribute order)."""
        (c, _, length), (c_out, _, l_out) = self.in_shape, self.out_shape
        return (f"conv1d {c}x{length} -> {c_out}x{l_out} k{self.kernel.shape[3]} s{self.stride[1]} "
                f"p{self.pads[1]},{self.pads[3]}" + (f" d{self.dilation[1]}" if self.dilation[1] != 1 else "")
                + (f" g{self.groups}" if self.groups != 1 else ""))


def read_conv1d(tracer, node, shape: tuple[int, ...], attrs: dict, kernel: np.ndarray) -> Conv1d:
    """The :class:`Conv1d` of an ONNX ``Conv`` node with a 3-D ``kernel`` ``(C', C/g, k)`` on a per-sample
    tensor of ``shape`` ``(C, L)``: its attributes lifted to 2-D, then read as a 2-D convolution."""
    if len(shape) != 2:
        tracer.fail_node(node, f"a 1-D convolution (weight {list(kernel.shape)}) needs a [N, C, L] input, got per-sample "
                               f"shape {list(shape)}", UnsupportedOpError)
    lifted = {"group": attrs.get("group", 1)}
    for key, default, one in (("strides", (1,), 1), ("dilations", (1,), 1)):
        value = tuple(attrs.get(key, default))
        lifted[key] = (one, *value) if len(value) == 1 else value   # a wrong length fails in conv_spec
    if "pads" in attrs:
        pads = tuple(attrs["pads"])
        lifted["pads"] = (0, pads[0], 0, pads[1]) if len(pads) == 2 else pads
    if "kernel_shape" in attrs:
        lifted["kernel_shape"] = (1, *attrs["kernel_shape"])
    if "auto_pad" in attrs:
        lifted["auto_pad"] = attrs["auto_pad"]
    spec = conv_spec(tracer, node, (shape[0], 1, shape[1]), lifted, kernel[:, :, None, :])
    return Conv1d(spec.kernel, spec.bias, spec.in_shape, spec.layer_id, spec.neuron_ids, spec.stride, spec.pads,
                  spec.dilation, spec.groups)


def write_conv1d(layer: Conv1d, h: str, image: bool, b: GraphBuilder, tag: str, name: str) -> str:
    """A 1-D ``Conv`` on ``h`` (flat, or the ``(n, C, 1, L)`` image of the layer before), its output reshaped to
    the ``(n, C', 1, L')`` image the exporter tracks (a later 1-D convolution reads it the same way)."""
    c, _, length = layer.in_shape
    if layer.channels_last and not image:
        h = b.node("Reshape", [h, b.const(f"{tag}/input_shape", [-1, length, c], np.int64)], f"{NAME_PREFIX}/{tag}/signal_lc")
        h = b.node("Transpose", [h], f"{NAME_PREFIX}/{tag}/signal", perm=[0, 2, 1])
    else:
        h = b.node("Reshape", [h, b.const(f"{tag}/input_shape", [-1, c, length], np.int64)], f"{NAME_PREFIX}/{tag}/signal")
    out = b.node("Conv", [h, b.const(f"{tag}/kernel", layer.kernel[:, :, 0, :]), b.const(f"{tag}/bias", layer.bias)],
                 f"{name}/1d", kernel_shape=[int(layer.kernel.shape[3])], strides=[layer.stride[1]],
                 pads=[layer.pads[1], layer.pads[3]], dilations=[layer.dilation[1]], group=layer.groups)
    return b.node("Reshape", [out, b.const(f"{tag}/output_image", [-1, *layer.out_shape], np.int64)], name)


CONV_READERS[3] = read_conv1d
CONV_WRITERS[Conv1d] = write_conv1d
