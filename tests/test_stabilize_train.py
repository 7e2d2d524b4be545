"""Fine-tuning for provable stability (exactcomp.finetune.train), checked independently: the written ONNX model
keeps the original's interface (onnxruntime), meets the accuracy budget on the validation data (recomputed
from onnxruntime outputs), and exactcomp's own analysis finds every given-up unit stably inactive."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import exactcomp
from exactcomp.finetune.graph import with_weights
from exactcomp.finetune.train import StabilizeOptions, stabilize_graph

from .conftest import run_onnx, trained_digits_mlp


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A 64-24-24-10 MLP trained without any sparsity on scikit-learn's digits (inputs in [0, 1])."""
    path, X, y = trained_digits_mlp(tmp_path_factory.mktemp("digits") / "mlp.onnx", (24, 24), seed=0)
    return onnx.load(str(path)), X, y


def _accuracy(model, X, y) -> float:
    return float((run_onnx(model, X)[0].argmax(1) == y).mean())


def test_stabilized_model_meets_the_budget_and_its_units_are_provably_dead(digits_model, tmp_path):
    model, X, y = digits_model
    options = StabilizeOptions(fractions=(0.25, 0.5), epochs=4, lr=3e-3, max_accuracy_drop=2.0, time_limit=120)
    values, record = stabilize_graph(model, np.zeros((1, 64)), np.ones((1, 64)), X[:1200], y[:1200], options,
                                     validation=(X[1200:], y[1200:]))
    assert record.chosen is not None and values is not None
    chosen = record.rounds[record.chosen - 1]
    new = with_weights(model, values)
    path = tmp_path / "stable.onnx"
    onnx.save(new, str(path))
    before, after = _accuracy(model, X[1200:], y[1200:]), _accuracy(new, X[1200:], y[1200:])
    assert record.before == pytest.approx(before, abs=1e-9)
    assert after >= before - options.max_accuracy_drop / 100 - 1e-9
    assert chosen["accuracy"] == pytest.approx(after, abs=1e-9)
    # exactcomp's own analysis (float64, its own bounds and witnesses) finds at least the given-up units dead
    result = exactcomp.compress(str(path), {"lower": 0.0, "upper": 1.0}, time_limit=60)
    assert result.analysis.totals()["stably_inactive"] >= chosen["units_given_up"]
    original = exactcomp.compress(_saved(model, tmp_path),
                                  {"lower": 0.0, "upper": 1.0}, time_limit=60)
    assert result.parameters_after < original.parameters_after
    result.save(tmp_path / "small.onnx")   # verified against the stabilized model by onnxruntime


def _saved(model, tmp_path):
    path = tmp_path / "orig.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_no_round_meets_an_impossible_budget(digits_model):
    model, X, y = digits_model
    options = StabilizeOptions(fractions=(0.9,), epochs=1, max_accuracy_drop=0.0, time_limit=60, retries=0)
    values, record = stabilize_graph(model, np.zeros((1, 64)), np.ones((1, 64)), X[:1200], y[:1200], options,
                                     validation=(X[1200:], y[1200:]))
    assert values is None and record.chosen is None and len(record.rounds) == 1


def test_a_round_that_misses_the_budget_backs_off_to_half_the_step(digits_model, monkeypatch):
    """Rounds at 90 % are made to miss the budget: the next round starts again from the accepted 25 % round's
    masks (its given-up units stay, and no more than half the step is added), twice, then the run stops."""
    from exactcomp.finetune import train

    real = train._round_entry

    def entry(run, options, record, r, fraction, *rest):
        out = real(run, options, record, r, fraction, *rest)
        if fraction > 0.8:
            out[record.metric] = 0.0
        return out

    monkeypatch.setattr(train, "_round_entry", entry)
    model, X, y = digits_model
    options = StabilizeOptions(fractions=(0.25, 0.9), epochs=1, lr=3e-3, max_accuracy_drop=5.0, time_limit=120)
    values, record = stabilize_graph(model, np.zeros((1, 64)), np.ones((1, 64)), X[:1200], y[:1200], options,
                                     validation=(X[1200:], y[1200:]))
    fractions = [e["fraction"] for e in record.rounds]
    assert fractions[:2] == [0.25, 0.9] and fractions[2] == pytest.approx(0.575)
    given = [e["units_given_up"] for e in record.rounds]
    assert given[2] == 2 * int(0.575 * 24) < given[1]   # from the accepted round's masks, not the failed one's
    if record.rounds[2]["proven_dead"] and record.rounds[2]["accuracy"] >= record.before - 0.05:
        assert record.chosen == 3
    else:
        assert fractions[3] == pytest.approx(0.25 + 0.325 / 2) and record.chosen == 1


@pytest.mark.parametrize("recovers_after", [1, None])
def test_a_proven_round_under_the_budget_gets_recovery_stretches_before_backing_off(digits_model, monkeypatch,
                                                                                     recovers_after):
    """The 50 % round is made to miss the budget until it has had ``recovers_after`` recovery stretches (None:
    never): it is accepted as soon as it meets it, and otherwise gets exactly ``recovery`` of them (each one more
    stretch of fine-tuning, counted in its epochs) before the run backs off."""
    from exactcomp.finetune import train

    real, calls = train._round_entry, []

    def entry(run, options, record, r, fraction, *rest):
        out = real(run, options, record, r, fraction, *rest)
        if fraction == 0.5:
            calls.append(out["epochs"])
            if recovers_after is None or len(calls) <= recovers_after:
                out[record.metric] = 0.0
        return out

    monkeypatch.setattr(train, "_round_entry", entry)
    model, X, y = digits_model
    options = StabilizeOptions(fractions=(0.25, 0.5), epochs=1, lr=3e-3, max_accuracy_drop=50.0,
                               time_limit=120, retries=0, recovery=3)
    values, record = stabilize_graph(model, np.zeros((1, 64)), np.ones((1, 64)), X[:1200], y[:1200], options,
                                     validation=(X[1200:], y[1200:]))
    assert record.rounds[1]["proven_dead"]
    assert len(calls) == (recovers_after + 1 if recovers_after is not None else options.recovery + 1)
    assert all(b > a for a, b in zip(calls, calls[1:]))            # each recovery stretch adds epochs
    assert record.chosen == (2 if recovers_after is not None else 1)
    assert len(record.rounds) == 2                                   # a recovery is not a new round
