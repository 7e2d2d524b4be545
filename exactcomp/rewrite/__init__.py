"""Exact rewrites Network → Network (:mod:`exactcomp.rewrite.rules`; channels of convolutions:
:mod:`exactcomp.rewrite.channels`; next to skip connections: :mod:`exactcomp.rewrite.skips`)."""

from exactcomp.rewrite.rules import (collapse_constant_network, compress_network, fold_active_neurons,
                                     fold_constant_neurons, fold_fixed_inputs, independent_rows, merge_linear_layer,
                                     remove_neurons)
from exactcomp.rewrite.channels import remove_all_channels, remove_dead_channels
from exactcomp.rewrite.constants import constant_entries, fold_constant_channels

__all__ = ["collapse_constant_network", "compress_network", "fold_active_neurons", "fold_constant_neurons",
           "constant_entries", "fold_constant_channels", "fold_fixed_inputs", "independent_rows", "merge_linear_layer", "remove_all_channels", "remove_dead_channels",
           "remove_neurons"]
