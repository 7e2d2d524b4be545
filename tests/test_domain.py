"""Box files: accepted shapes and the one-line errors for bad ones."""

from __future__ import annotations


import numpy as np
import pytest

from exactcomp.domain import load_box, load_samples, make_box
from exactcomp.errors import DomainError

SHAPE = (1, 2, 3)


@pytest.mark.parametrize("lower", [0.5, np.full(SHAPE, 0.5).tolist(), np.full((1, *SHAPE), 0.5).tolist(),
                                   np.full(6, 0.5).tolist()])
def test_accepted_shapes(lower):
    box = make_box(lower, 1.0, SHAPE)
    assert box.size == 6 and np.all(box.lower == 0.5) and np.all(box.upper == 1.0)


def test_order_is_row_major():
    lower = np.arange(6.0).reshape(SHAPE)
    box = make_box(lower.tolist(), 10.0, SHAPE)
    np.testing.assert_array_equal(box.lower, np.arange(6.0))


@pytest.mark.parametrize("text, message", [
    ("{", "invalid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"lower": [0, 0], "upper": 1}', "field 'lower' has shape [2]"),
    ('{"lower": 0, "upper": -1}', "lower exceeds upper at flat index 0"),
    ('{"lower": 0, "upper": Infinity}', "field 'upper' has a non-finite entry"),
])
def test_bad_files(tmp_path, text, message):
    path = tmp_path / "box.json"
    path.write_text(text)
    with pytest.raises(DomainError, match="box.json") as err:
        load_box(path, SHAPE)
    assert message in str(err.value)


def test_samples(tmp_path):
    path = tmp_path / "s.npy"
    np.save(path, np.zeros((4, *SHAPE), np.float32))
    assert load_samples(path, SHAPE).shape == (4, 6)
    np.save(path, np.zeros((4, 5)))
    with pytest.raises(DomainError, match="s.npy"):
        load_samples(path, SHAPE)


def test_user_samples_become_witnesses():
    """A neuron positive only in a tiny L1 ball around the box centre is shown unstable by a user sample."""
    from exactcomp.analysis import AnalysisOptions, Status, analyze
    from exactcomp.domain import Box
    from exactcomp.ir.network import Dense, Network, TensorInfo

    n = 40
    W1 = np.vstack([np.eye(n), -np.eye(n)])          # relu(x - 1/2) + relu(1/2 - x) = |x - 1/2|
    b1 = np.concatenate([np.full(n, -0.5), np.full(n, 0.5)])
    W2, b2 = -np.ones((1, 2 * n)), np.array([0.05])   # g = 0.05 - ||x - 1/2||_1
    layers = (Dense(W1, b1, 1, np.arange(2 * n)), Dense(W2, b2, 2, np.arange(1)),
              Dense(np.ones((1, 1)), np.zeros(1), 3, np.arange(1)))
    info = TensorInfo("y", (1,), "float32")
    net = Network(layers, TensorInfo("x", (n,), "float32"), info, (info,))
    box = Box(np.zeros(n), np.ones(n))
    opts = dict(random_points=256, gradient_steps=0, gradient_restarts=0, strategy="bounds")
    without = analyze(net, box, AnalysisOptions(**opts))
    assert without.layers[1].status[0] == Status.UNKNOWN
    with_samples = analyze(net, box, AnalysisOptions(samples=np.full((1, n), 0.5), **opts))
    assert with_samples.layers[1].status[0] == Status.UNSTABLE
