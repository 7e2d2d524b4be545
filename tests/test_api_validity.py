"""The API cannot be fooled: an analysis is used only for its own network over its own domain (or a sub-box),
``save`` verifies and writes the witnesses, the time budget of a union is shared, the witnesses file is bounded."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest

import exactcomp
from exactcomp.io.onnx_export import to_onnx
from exactcomp.io.witness_file import WITNESSES_KEY, sha256_bytes
from exactcomp.rewrite.rules import compress_network
from exactcomp.validity import AnalysisMismatch, network_sha256

from .conftest import onnx_mlp, random_weights, run_onnx


@pytest.fixture
def model(tmp_path):
    Ws, bs = random_weights([6, 16, 12, 3], seed=11, scale=0.8, bias_shift=-0.3)
    path = tmp_path / "m.onnx"
    onnx.save(onnx_mlp(Ws, bs), str(path))
    return path


def _max_error_on(original_path, compressed_model, lower, upper, n=4000, seed=0):
    """Independent check: onnxruntime on both models at uniform points of [lower, upper]."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(lower, upper, size=(n, 6))
    return float(np.max(np.abs(run_onnx(original_path, X)[0] - run_onnx(compressed_model, X)[0])))


BOX_A = {"lower": 0.0, "upper": 0.3}
BOX_B = {"lower": 0.5, "upper": 1.0}


def test_an_analysis_of_another_box_is_refused_and_would_have_been_wrong(model):
    net = exactcomp.load(model)
    a = exactcomp.analyze(net, BOX_A)
    assert a.totals()["stably_inactive"] + a.totals()["stably_active"] > 0
    # what the API wrote before the check: the rewrite of box A's analysis is wrong on box B
    wrong = to_onnx(compress_network(net, a))
    assert _max_error_on(model, wrong, 0.5, 1.0) > 1e-3
    with pytest.raises(AnalysisMismatch, match="another domain"):
        exactcomp.compress(net, BOX_B, analysis=a)
    with pytest.raises(AnalysisMismatch, match="another domain"):   # slightly wider is refused too
        exactcomp.compress(net, {"lower": 0.0, "upper": 0.3 + 1e-9}, analysis=a)
    with pytest.raises(AnalysisMismatch, match="box 2 of 2"):       # a union leaving it
        exactcomp.compress(net, [BOX_A, BOX_B], analysis=a)


def test_a_sub_box_is_accepted_and_exact(model, tmp_path):
    net = exactcomp.load(model)
    a = exactcomp.analyze(net, BOX_A)
    result = exactcomp.compress(net, {"lower": 0.1, "upper": 0.2}, analysis=a)
    assert result.parameters_after < result.parameters_before
    path = result.save(tmp_path / "small.onnx")
    assert _max_error_on(model, str(path), 0.1, 0.2) < 1e-5
    assert result.analysis is a


def test_an_analysis_of_another_network_is_refused_not_a_key_error(model):
    net = exactcomp.load(model)
    a = exactcomp.analyze(net, BOX_A)
    first = net.layers[0]
    other = net.with_layers([dataclasses.replace(first, b=first.b + 1e-12), *net.layers[1:]])
    with pytest.raises(AnalysisMismatch, match="another network"):
        exactcomp.compress(other, BOX_A, analysis=a)
    smaller = exactcomp.load(model)   # the same file read again is the same network
    assert network_sha256(smaller) == network_sha256(net)
    exactcomp.compress(smaller, BOX_A, analysis=a)


def test_options_with_an_analysis_and_hand_made_analyses_are_refused(model):
    net = exactcomp.load(model)
    a = exactcomp.analyze(net, BOX_A)
    with pytest.raises(exactcomp.ExactcompError, match="margin"):
        exactcomp.compress(net, BOX_A, analysis=a, margin=1e-3)
    with pytest.raises(exactcomp.ExactcompError, match="valid for"):
        exactcomp.compress(net, BOX_A, analysis=dataclasses.replace(a, valid_for=None))
    with pytest.raises(exactcomp.ExactcompError, match="exactcomp.Analysis"):
        exactcomp.compress(net, BOX_A, analysis={"layers": []})


def test_union_analysis_holds_for_each_of_its_boxes(model):
    net = exactcomp.load(model)
    a = exactcomp.analyze(net, [BOX_A, BOX_B])
    exactcomp.compress(net, BOX_B, analysis=a)          # one of its boxes
    exactcomp.compress(net, [BOX_B, BOX_A], analysis=a)
    with pytest.raises(AnalysisMismatch):
        exactcomp.compress(net, {"lower": 0.0, "upper": 1.0}, analysis=a)   # the hull is not the union


def test_save_verifies_and_writes_the_witnesses(model, tmp_path):
    result = exactcomp.compress(str(model), BOX_A)
    path = result.save(tmp_path / "s.onnx", report=tmp_path / "r.json")
    stored = tmp_path / "s.witnesses.npy"
    assert stored.is_file()
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta[WITNESSES_KEY] == sha256_bytes(stored.read_bytes())
    check = exactcomp.verify(str(model), str(path), BOX_A)
    assert check.passed
    # a wrong compressed network (a bias changed) fails verification: nothing but the report is written
    bad = dataclasses.replace(result, compressed=result.compressed.with_layers(
        [*result.compressed.layers[:-1], dataclasses.replace(result.compressed.layers[-1],
                                                             b=result.compressed.layers[-1].b + 0.5)]))
    with pytest.raises(exactcomp.VerificationError):
        bad.save(tmp_path / "bad.onnx", report=tmp_path / "bad.json")
    assert not (tmp_path / "bad.onnx").exists() and not (tmp_path / "bad.witnesses.npy").exists()
    assert (tmp_path / "bad.json").is_file()
    with pytest.raises(exactcomp.ExactcompError, match="overwrite"):
        result.save(model)   # never the original model


def test_time_budget_is_shared_across_the_boxes(model, monkeypatch):
    """Box i of n gets (budget - proof time spent) / (n - i); each box here spends 70 % of its share."""
    from exactcomp import api

    real, shares = api._analyze, []

    def recording(network, box, options, progress=None):
        shares.append(options.time_limit)
        out = real(network, box, dataclasses.replace(options, time_limit=None), progress)
        return dataclasses.replace(out, times={"bounds": 0.1, "portfolio": 0.7 * options.time_limit})

    monkeypatch.setattr(api, "_analyze", recording)
    net = exactcomp.load(model)
    boxes = [BOX_A, BOX_B, {"lower": 0.3, "upper": 0.6}]
    a = exactcomp.analyze(net, boxes, time_limit=30.0)
    expected, spent = [], 0.0
    for i in range(3):
        expected.append((30.0 - spent) / (3 - i))
        spent += 0.7 * expected[-1]
    assert shares == pytest.approx(expected)
    assert a.proof_seconds <= 30.0 and a.options.time_limit == 30.0


def test_witnesses_file_keeps_the_most_cited_points():
    from exactcomp.analysis import Analysis, LayerAnalysis
    from exactcomp.pipeline import witnesses_to_store

    from .conftest import random_network

    network = random_network([4, 5, 3])
    rng = np.random.default_rng(0)
    points = rng.uniform(size=(6, 4))
    pos = np.array([0, 1, 1, 1, -1])
    neg = np.array([2, 2, 3, 5, -1])
    layer = LayerAnalysis(1, np.zeros(5, np.int8), np.full(5, "", object), np.zeros(5), np.zeros(5), pos, neg)
    analysis = Analysis(network, None, (layer,), points)
    kept, dropped = witnesses_to_store(analysis, max_bytes=3 * 4 * 8)
    counts = np.bincount(np.concatenate([pos[pos >= 0], neg[neg >= 0]]), minlength=6)   # 1, 3, 2, 1, 0, 1
    top = np.sort(np.argsort(-counts, kind="stable")[:3])
    assert dropped == 3 and np.array_equal(kept, points[top])
    everything, none = witnesses_to_store(analysis)
    assert none == 0 and np.array_equal(everything, points)


def test_per_layer_results_from_the_api(model):
    net = exactcomp.load(model)
    result = exactcomp.compress(net, BOX_A)
    a = result.analysis
    for la, layer in zip(a.layers, net.hidden):
        assert la.neurons == layer.width and sum(la.counts.values()) == layer.width
        assert la.counts["stably_inactive"] == la.count(exactcomp.Status.INACTIVE) == int(np.sum(la.status == 2))
    assert result.parameters_before == sum(layer.W.size + layer.b.size for layer in net.layers)
    assert result.parameters_after == result.compressed.parameter_count
    assert result.removed_fraction == pytest.approx(1 - result.parameters_after / result.parameters_before)
    assert result.widths["before"] == net.widths and result.report()["parameters"]["after"] == result.parameters_after


def test_quiet_prints_only_the_summary_lines(model, tmp_path):
    from .faults import cli

    box = tmp_path / "box.json"
    box.write_text('{"lower": 0, "upper": 0.3}')
    loud = cli("compress", str(model), "--domain", str(box), "-o", str(tmp_path / "a.onnx"))
    quiet = cli("compress", str(model), "--domain", str(box), "-o", str(tmp_path / "b.onnx"), "--quiet")
    assert loud.returncode == quiet.returncode == 0, quiet.stderr
    quiet_lines = quiet.stdout.strip().splitlines()
    assert quiet_lines and all(line.split()[0] in {"widths", "parameters", "times", "proofs", "verify", "wrote",
                                                   "witnesses", "channels", "note", "not"} for line in quiet_lines)
    assert len(loud.stdout.splitlines()) > len(quiet_lines) and quiet.stderr == ""
    silent = cli("compress", str(model), "--domain", str(box), "-o", str(tmp_path / "c.onnx"), "--quiet", "--json")
    assert silent.returncode == 0 and silent.stderr == "" and silent.stdout.lstrip().startswith("{")


def test_network_hash_sees_sparse_values_not_their_storage():
    """Sparse matrices inside ops hash by their values: an unsorted or duplicated CSR storage of the same
    matrix hashes alike (scipy flips such flags as the matrix is used), a changed entry does not."""
    import hashlib

    import scipy.sparse as sp

    from exactcomp.validity import feed_digest

    def digest(value):
        h = hashlib.sha256()
        feed_digest(h, value)
        return h.hexdigest()

    dense = np.array([[0.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    sorted_csr = sp.csr_array(dense)
    unsorted = sp.csr_array((np.array([3.0, 2.0, 4.0]), np.array([2, 1, 0]), np.array([0, 2, 3])), shape=(2, 3))
    duplicated = sp.csr_array((np.array([1.0, 1.0, 3.0, 4.0]), np.array([1, 1, 2, 0]), np.array([0, 3, 4])),
                              shape=(2, 3))
    assert np.array_equal(unsorted.toarray(), dense) and np.array_equal(duplicated.toarray(), dense)
    assert digest(sorted_csr) == digest(unsorted) == digest(duplicated)
    changed = dense.copy()
    changed[1, 0] = 4.0 + 1e-12
    assert digest(sp.csr_array(changed)) != digest(sorted_csr)
    assert digest(sp.csr_array(dense.T)) != digest(sorted_csr)
