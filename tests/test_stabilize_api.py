"""``exactcomp.stabilize`` (the Python API), checked independently: the validation metric and the per-class
recall of the report against onnxruntime outputs and scikit-learn's recall, the units and neurons stable by
bounds against interval arithmetic written here in numpy, and the exact compression of the result."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import exactcomp
from exactcomp.errors import DomainError, ExactcompError

from .conftest import run_onnx, trained_digits_mlp

MARGIN = 1e-3


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A 64-16-16-10 MLP trained without sparsity on scikit-learn's digits (inputs in [0, 1])."""
    return trained_digits_mlp(tmp_path_factory.mktemp("api") / "m.onnx", (16, 16), seed=2)


def _interval_counts(model: onnx.ModelProto) -> dict:
    """Units dead and neurons stable over [0, 1]^64 by interval arithmetic on the Gemm weights (numpy, float64)."""
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    lo, hi = np.zeros(64), np.ones(64)
    counts = dict(units=0, units_dead=0, neurons=0, neurons_inactive=0, neurons_active=0)
    for node in gemms[:-1]:
        W, b = inits[node.input[1]], inits[node.input[2]]
        pos, neg = np.maximum(W, 0), np.minimum(W, 0)
        l, u = pos @ lo + neg @ hi + b, pos @ hi + neg @ lo + b
        counts["units"] += len(b)
        counts["neurons"] += len(b)
        counts["units_dead"] += int((u <= -MARGIN).sum())
        counts["neurons_inactive"] += int((u <= -MARGIN).sum())
        counts["neurons_active"] += int((l >= MARGIN).sum())
        lo, hi = np.maximum(l, 0), np.maximum(u, 0)
    return counts


def test_report_matches_onnxruntime_sklearn_and_interval_arithmetic(digits):
    from sklearn.metrics import recall_score

    path, X, y = digits
    result = exactcomp.stabilize(path, X[:1200], y[:1200], domain={"lower": 0.0, "upper": 1.0}, val_data=X[1200:],
                                 val_labels=y[1200:], max_accuracy_drop=2.0, fractions=(0.25, 0.5), epochs=2,
                                 time_limit=90)
    assert result.model is not None
    report = result.report()
    original = onnx.load(str(path))
    for side, model in (("before", original), ("after", result.model)):
        predicted = run_onnx(model, X[1200:])[0].argmax(1)
        assert report[side]["value"] == pytest.approx(float((predicted == y[1200:]).mean()), abs=1e-9)
        expected = recall_score(y[1200:], predicted, labels=range(10), average=None)
        assert report[side]["recall"] == pytest.approx(list(expected), abs=1e-12)
        assert report[side]["worst_class"]["recall"] == pytest.approx(expected.min(), abs=1e-12)
        assert report[side]["stable"] == _interval_counts(model)
    right = [run_onnx(m, X[1200:])[0].argmax(1) == y[1200:] for m in (original, result.model)]
    change = right[1].astype(float) - right[0].astype(float)   # per row; the s.e. of its mean, paired
    assert report["after"]["change_se"] == pytest.approx(change.std() / np.sqrt(len(change)), abs=1e-12)
    assert report["after"]["value"] >= report["before"]["value"] - 0.02 - 1e-12
    assert report["after"]["stable"]["units_dead"] >= result.chosen["units_given_up"] > 0
    small = result.compress(time_limit=30)
    assert small.analysis.totals()["stably_inactive"] >= result.chosen["units_given_up"]
    assert small.parameters_after < small.parameters_before


def test_agreement_budget_without_labels(digits):
    path, X, y = digits
    result = exactcomp.stabilize(path, X[:1200], domain={"lower": 0.0, "upper": 1.0}, val_data=X[1200:],
                                 min_agreement=0.95, fractions=(0.25,), epochs=2, time_limit=60)
    assert result.record.metric == "agreement" and result.record.before == 1.0
    if result.model is not None:
        original = run_onnx(onnx.load(str(path)), X[1200:])[0].argmax(1)
        after = run_onnx(result.model, X[1200:])[0].argmax(1)
        agreement = float((after == original).mean())
        assert result.chosen["agreement"] == pytest.approx(agreement, abs=1e-9) and agreement >= 0.95 - 1e-12


@pytest.mark.parametrize("case, error, needle", [
    ("no_domain", DomainError, "needs a domain"), ("option", ExactcompError, "unknown option 'epoch'"),
    ("outside", DomainError, "outside the domain"), ("chance", DomainError, "chance level"),
    ("shape", DomainError, "expected (count, 64)"), ("bool", DomainError, "real numbers"),
])
def test_bad_input_raises_one_line_before_training(digits, case, error, needle):
    path, X, y = digits
    kwargs = dict(domain={"lower": 0.0, "upper": 1.0}, time_limit=30)
    data, labels = X[:300], y[:300]
    if case == "no_domain":
        kwargs.pop("domain")
    elif case == "option":
        kwargs["epoch"] = 3
    elif case == "outside":
        data = data + 0.5
    elif case == "chance":   # labels the model never predicts: its accuracy on them is 0
        labels = (run_onnx(onnx.load(str(path)), data)[0].argmax(1) + 1) % 10
    elif case == "shape":
        data = data[:, :60]
    elif case == "bool":
        data = data > 0.5
    with pytest.raises(error) as info:
        exactcomp.stabilize(path, data, labels, **kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_on_a_gpu_the_same_code_meets_the_budget_and_matches_onnxruntime(digits):
    path, X, y = digits
    result = exactcomp.stabilize(path, X[:1200], y[:1200], domain={"lower": 0.0, "upper": 1.0}, val_data=X[1200:],
                                 val_labels=y[1200:], max_accuracy_drop=2.0, fractions=(0.25,), epochs=2,
                                 time_limit=90, device="cuda")
    assert result.model is not None
    predicted = run_onnx(result.model, X[1200:])[0].argmax(1)
    assert result.chosen["accuracy"] == pytest.approx(float((predicted == y[1200:]).mean()), abs=1e-9)
    assert result.report()["after"]["stable"] == _interval_counts(result.model)


def _dead_over(model: onnx.ModelProto, lower: np.ndarray, upper: np.ndarray) -> list:
    """Per hidden layer, the units whose pre-activation is <= 0 over the box (numpy interval arithmetic)."""
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    lo, hi, dead = lower, upper, []
    for node in [n for n in model.graph.node if n.op_type == "Gemm"][:-1]:
        W, b = inits[node.input[1]], inits[node.input[2]]
        pos, neg = np.maximum(W, 0), np.minimum(W, 0)
        l, u = pos @ lo + neg @ hi + b, pos @ hi + neg @ lo + b
        dead.append(set(np.flatnonzero(u <= 0).tolist()))
        lo, hi = np.maximum(l, 0), np.maximum(u, 0)
    return dead


@pytest.mark.parametrize("form", ["union", "vnnlib"])
def test_union_and_vnnlib_domains_give_units_dead_over_every_part(digits, tmp_path, form):
    """A union of two boxes split on pixel 3 (a list of dicts, or one VNN-LIB file with an ``or``): the units
    given up are dead over each part, and the exact compression over the same union leaves nothing unknown."""
    path, X, y = digits
    cut = 0.5
    parts = [(np.zeros(64), np.where(np.arange(64) == 3, cut, 1.0)), (np.where(np.arange(64) == 3, cut, 0.0), np.ones(64))]
    if form == "union":
        domain = [{"lower": lo.tolist(), "upper": hi.tolist()} for lo, hi in parts]
    else:
        def conj(lo, hi):
            return "(and " + " ".join(f"(>= X_{i} {lo[i]}) (<= X_{i} {hi[i]})" for i in range(64)) + ")"
        text = "".join(f"(declare-const X_{i} Real)\n" for i in range(64)) + "(declare-const Y_0 Real)\n"
        text += f"(assert (or {conj(*parts[0])} {conj(*parts[1])}))\n(assert (>= Y_0 -1e9))\n"
        domain = tmp_path / "split.vnnlib"
        domain.write_text(text)
    result = exactcomp.stabilize(path, X[:1200], y[:1200], domain=domain, val_data=X[1200:], val_labels=y[1200:],
                                 max_accuracy_drop=2.0, fractions=(0.25, 0.5), epochs=2, time_limit=90)
    assert result.model is not None and len(result.domain.parts) == 2
    given_up = result.chosen["units_given_up"]
    dead = [_dead_over(result.model, lo, hi) for lo, hi in parts]
    assert all(sum(map(len, d)) >= given_up > 0 for d in dead)
    small = result.compress(time_limit=30)
    assert small.analysis.totals()["unknown"] == 0
    assert small.parameters_after < small.parameters_before
    out = tmp_path / "small.onnx"
    small.save(out)   # verified against the stabilized model; checked here again with onnxruntime
    assert np.allclose(run_onnx(onnx.load(str(out)), X[1200:])[0], run_onnx(result.model, X[1200:])[0], atol=1e-4)
