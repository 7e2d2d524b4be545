"""The allocation rules of ``exactcomp stabilize`` (exactcomp.finetune.allocation): what a unit holds, measured by
gradients, against the count read off the architecture; the knapsack order against a brute-force choice; and a
stabilize run with the ``cost`` rule whose given-up units exactcomp's own analysis then finds dead."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import torch

import exactcomp
from exactcomp.finetune.allocation import give_up_by_cost, give_up_uniform, unit_costs
from exactcomp.finetune.graph import TorchGraph, with_weights
from exactcomp.finetune.train import StabilizeOptions, stabilize_graph

from .conftest import export_torch, trained_digits_mlp


def _graph(module, shape, tmp_path):
    return TorchGraph(onnx.load(str(export_torch(module, tmp_path / "m.onnx", dynamo=False, shape=shape))))


def _positive_mlp(sizes):
    """Weights and biases > 0 and inputs >= 0: every unit active on every row, every gradient entry nonzero."""
    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.uniform_(0.1, 1.0)
            lin.bias.uniform_(0.1, 1.0)
        layers += [lin, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def test_a_dense_unit_holds_its_row_its_bias_and_its_column(tmp_path):
    sizes = (5, 4, 3, 2)
    graph = _graph(_positive_mlp(sizes), (1, 5), tmp_path)
    X = torch.rand(32, 5, dtype=torch.float64)
    masks = {name: torch.ones(n, dtype=torch.float64) for name, n in zip(graph.relu_names, sizes[1:-1])}
    costs = unit_costs(graph, X, masks)
    expected = [sizes[k] + 1 + sizes[k + 2] for k in range(len(sizes) - 2)]   # row + bias + next layer's column
    for name, want, n in zip(graph.relu_names, expected, sizes[1:-1]):
        assert costs[name].tolist() == [want] * n
    # a masked unit holds nothing, and the next layer's units lose the entry of their row that it fed
    masks[graph.relu_names[0]][1] = 0.0
    costs = unit_costs(graph, X, masks)
    assert costs[graph.relu_names[0]].tolist() == [expected[0], 0, expected[0], expected[0]]
    assert costs[graph.relu_names[1]].tolist() == [expected[1] - 1] * sizes[2]


def test_a_channel_holds_its_kernel_bias_and_the_dense_readers_columns(tmp_path):
    torch.manual_seed(0)
    conv, dense = torch.nn.Conv2d(2, 3, 3), torch.nn.Linear(3 * 4 * 4, 5)
    with torch.no_grad():
        for p in (*conv.parameters(), *dense.parameters()):
            p.uniform_(0.1, 1.0)
    graph = _graph(torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Flatten(), dense), (1, 2, 6, 6), tmp_path)
    costs = unit_costs(graph, torch.rand(16, 2, 6, 6, dtype=torch.float64),
                       {graph.relu_names[0]: torch.ones(3, dtype=torch.float64)})
    assert costs[graph.relu_names[0]].tolist() == [2 * 3 * 3 + 1 + 5 * 4 * 4] * 3


def test_the_cost_rule_frees_the_fraction_at_the_lowest_loss_per_parameter():
    """Brute force: among the unit sets that free the fraction (one unit of each node kept), the greedy choice
    costs no more score than the best set of the same size, and it stops as soon as the fraction is freed."""
    rng = np.random.default_rng(3)
    units = {"a": 4, "b": 3}
    scores = {"a": rng.random(4), "b": rng.random(3)}
    held = {"a": np.array([10.0, 10.0, 10.0, 10.0]), "b": np.array([2.0, 2.0, 2.0])}
    total = sum(c.sum() for c in held.values())
    for fraction in (0.2, 0.5, 0.8):
        masks = {k: torch.ones(n, dtype=torch.float64) for k, n in units.items()}
        give_up_by_cost(masks, units, fraction, scores, lambda: (held, held))
        chosen = [(k, u) for k in units for u in range(units[k]) if masks[k][u] == 0]
        freed = sum(held[k][u] for k, u in chosen)
        kept_one = all(int((m > 0).sum()) >= 1 for m in masks.values())
        assert kept_one
        feasible_max = total - sum(held[k].min() for k in units)
        assert freed >= min(fraction * total, feasible_max) - 1e-9
        # minus any one chosen unit, the fraction would not be freed (no unit given up for nothing) ...
        ratios = {(k, u): scores[k][u] / held[k][u] for k in units for u in range(units[k])}
        last = max(chosen, key=lambda c: ratios[c])
        assert freed - held[last[0]][last[1]] < fraction * total
        # ... and every unit left has a ratio no lower than the chosen ones of the same node
        for k in units:
            left = [ratios[(k, u)] for u in range(units[k]) if masks[k][u] > 0]
            given = [ratios[(k, u)] for u in range(units[k]) if masks[k][u] == 0]
            if given and len(left) > 1:
                assert min(left) >= max(given)
    # uniform: the same fraction of each node, lowest score first (brute force over the subsets)
    masks = {k: torch.ones(n, dtype=torch.float64) for k, n in units.items()}
    give_up_uniform(masks, units, 0.5, scores, None)
    for k, n in units.items():
        best = min(itertools.combinations(range(n), int(0.5 * n)), key=lambda s: scores[k][list(s)].sum())
        assert sorted(np.flatnonzero(masks[k].numpy() == 0).tolist()) == sorted(best)


def test_stabilize_with_the_cost_rule_gives_up_provably_dead_units_within_the_budget(tmp_path):
    path, X, y = trained_digits_mlp(tmp_path / "mlp.onnx", (16, 12), seed=0)
    model = onnx.load(str(path))
    options = StabilizeOptions(fractions=(0.3, 0.5), epochs=3, lr=3e-3, max_accuracy_drop=3.0, time_limit=120,
                               allocation="cost")
    values, record = stabilize_graph(model, np.zeros((1, 64)), np.ones((1, 64)), X[:1200], y[:1200], options,
                                     validation=(X[1200:], y[1200:]))
    assert record.chosen is not None
    path = tmp_path / "stable.onnx"
    onnx.save(with_weights(model, values), str(path))
    result = exactcomp.compress(str(path), {"lower": 0.0, "upper": 1.0}, time_limit=60)
    assert result.analysis.totals()["stably_inactive"] >= record.rounds[record.chosen - 1]["units_given_up"]
    result.save(tmp_path / "small.onnx")   # verified against the stabilized model by onnxruntime
