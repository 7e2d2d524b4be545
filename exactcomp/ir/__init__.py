"""The intermediate representation: immutable networks of float64 affine ops (dense, convolution) with
ReLUs between them and skip connections (``network``, ``conv``, ``skip``). Never imports onnx."""

from exactcomp.ir.conv import Conv
from exactcomp.ir.network import Dense, Head, Network, TensorInfo
from exactcomp.ir.skip import Embed, Skip

__all__ = ["Conv", "Dense", "Embed", "Head", "Network", "Skip", "TensorInfo"]
