"""Exact rewrites Network → Network (:mod:`exactcomp.rewrite.rules`; next to skip connections:
:mod:`exactcomp.rewrite.skips`)."""

from exactcomp.rewrite.rules import (collapse_constant_network, compress_network, fold_active_neurons,
                                     fold_constant_neurons, fold_fixed_inputs, independent_rows, merge_linear_layer,
                                     remove_all_channels, remove_dead_channels, remove_neurons)

__all__ = ["collapse_constant_network", "compress_network", "fold_active_neurons", "fold_constant_neurons",
           "fold_fixed_inputs", "independent_rows", "merge_linear_layer", "remove_all_channels", "remove_dead_channels",
           "remove_neurons"]
