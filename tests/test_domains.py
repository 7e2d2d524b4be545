"""Domains: VNN-LIB input boxes (and malformed files), unions of boxes against exact per-box oracles and
sampling, domains from data and balls, and what the report records."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest

from exactcomp.analysis import AnalysisOptions, Status
from exactcomp.api import analyze, compress, load_domain
from exactcomp.cli.main import main
from exactcomp.domain import Box
from exactcomp.domains.derive import balls, box_from_data
from exactcomp.domains.union import Domain
from exactcomp.domains.vnnlib import read_vnnlib_boxes
from exactcomp.errors import DomainError

from .conftest import onnx_mlp, random_network, random_weights, run_onnx
from .oracles import exact_ranges

PROPERTY = """; a property in the VNN-COMP style
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)

(assert (<= X_0 0.5))
(assert (>= X_0 -0.25))
(assert (and (<= X_1 1e-1) (>= X_1 (- 0.3))))   ; scientific notation, a negated literal
(assert (<= 0.2 X_2))                          ; the constant first
(assert (< X_2 0.7))
(assert (or (and (>= Y_0 Y_1)) (and (<= Y_0 0.0))))  ; the output property: ignored
"""


def test_vnnlib_box_is_read(tmp_path):
    path = tmp_path / "p.vnnlib"
    path.write_text(PROPERTY)
    [(lower, upper)] = read_vnnlib_boxes(path, 3)
    np.testing.assert_array_equal(lower, [-0.25, -0.3, 0.2])
    np.testing.assert_array_equal(upper, [0.5, 0.1, 0.7])
    gz = tmp_path / "p.vnnlib.gz"
    gz.write_bytes(gzip.compress(PROPERTY.encode()))
    [(lower2, upper2)] = read_vnnlib_boxes(gz, 3)
    np.testing.assert_array_equal(lower2, lower)
    np.testing.assert_array_equal(upper2, upper)


def test_vnnlib_disjunction_of_input_boxes_is_a_union(tmp_path):
    path = tmp_path / "u.vnnlib"
    path.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
                    "(assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 2) (<= X_0 3))))\n")
    boxes = read_vnnlib_boxes(path)
    assert [(lo.tolist(), hi.tolist()) for lo, hi in boxes] == [([0, 0], [1, 1]), ([2, 0], [3, 1])]


@pytest.mark.parametrize("body,words", [
    ("(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n", "X_1 has no lower bound"),
    ("(assert (<= (+ X_0 X_1) 1))\n", ":3: input constraint is not a bound"),
    ("(assert (<= X_0 X_1))\n", ":3: input constraint is not a bound"),
    ("(assert (>= X_0 Y_0))\n", ":3: an assertion mixing inputs and outputs"),
    ("(assert (<= X_0 1)\n", "never closed"),
    ("(assert (<= X_0 0))\n(assert (>= X_0 1))\n(assert (<= X_1 1))\n(assert (>= X_1 0))\n", "empty box"),
    ("(assert (<= X_0 inf))\n", ":3: bound inf is not finite"),
])
def test_malformed_vnnlib_is_a_one_line_error_naming_the_line(tmp_path, body, words):
    path = tmp_path / "bad.vnnlib"
    path.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n" + body)
    with pytest.raises(DomainError, match=words.replace("(", r"\(").replace("+", r"\+")):
        read_vnnlib_boxes(path, 2)


def test_vnnlib_of_the_wrong_size_and_cli_errors(tmp_path, capsys):
    Ws, bs = random_weights([3, 4, 2], seed=1)
    model = tmp_path / "m.onnx"
    model.write_bytes(onnx_mlp(Ws, bs).SerializeToString())
    prop = tmp_path / "p.vnnlib"
    prop.write_text(PROPERTY.replace("(declare-const X_2 Real)\n", "").replace("(assert (<= 0.2 X_2))\n", "")
                    .replace("(assert (< X_2 0.7))\n", ""))
    out = tmp_path / "small.onnx"
    assert main(["compress", str(model), "--domain", str(prop), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "declares 2 inputs" in err[0] and str(prop) in err[0]
    assert not out.exists()


def _two_box_case(seed):
    """A tiny network and two disjoint boxes on which some neurons take opposite stable signs."""
    net = random_network([2, 4, 3, 1], seed=seed, bias_shift=-0.2)
    return net, Domain((Box([-1.0, -1.0], [-0.6, -0.5]), Box([0.55, 0.4], [1.0, 1.0])))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_union_rule_matches_exact_per_box_oracles(seed):
    net, domain = _two_box_case(seed)
    ranges = [exact_ranges(net, box) for box in domain.parts]
    result = analyze(net, domain)
    margin = 2 * AnalysisOptions().margin
    assert result.stats["domain_parts"] == 2
    _, pre = net.forward(result.witnesses, return_preactivations=True) if len(result.witnesses) else (None, None)
    assert domain.contains(result.witnesses).all()
    for k, la in enumerate(result.layers):
        lo = np.min([r[0][k] for r in ranges], axis=0)       # exact range over the union
        hi = np.max([r[1][k] for r in ranges], axis=0)
        clear = (np.abs(lo) > margin) & (np.abs(hi) > margin) & np.all(
            [(np.abs(r[0][k]) > margin) & (np.abs(r[1][k]) > margin) for r in ranges], axis=0)
        assert np.all((la.status == Status.ACTIVE)[clear] == (lo >= 0)[clear])
        assert np.all((la.status == Status.INACTIVE)[clear] == (hi <= 0)[clear])
        assert np.all((la.status == Status.UNSTABLE)[clear] == ((lo < 0) & (hi > 0))[clear])
        for j in np.flatnonzero(la.status == Status.UNSTABLE):   # witnesses checked in float64, inside the union
            assert pre[k][la.witness_pos[j], j] > 0 and pre[k][la.witness_neg[j], j] < 0


def test_union_compression_is_exact_on_every_box_and_not_only_on_one():
    hits = 0
    for seed in range(12):
        net, domain = _two_box_case(seed)
        result = compress(net, domain)
        rng = np.random.default_rng(seed)
        for box in domain.parts:
            x = box.sample(3000, rng)
            np.testing.assert_allclose(result.compressed.forward(x), net.forward(x), atol=1e-9)
        one = compress(net, domain.parts[0]).compressed      # exact on box 0 alone ...
        x = domain.parts[1].sample(3000, rng)
        hits += not np.allclose(one.forward(x), net.forward(x), atol=1e-6)   # ... but not on box 1
    assert hits > 0   # the union rule is needed: some single-box compressions are wrong on the other box


def test_domains_from_data_and_balls():
    rng = np.random.default_rng(0)
    data = rng.random((50, 6))
    data[:, 2] = 0.25                                     # constant in the data: fixed
    box = box_from_data(data, margin=0.1, outer=Box(np.zeros(6), np.ones(6)))
    width = data.max(0) - data.min(0)
    np.testing.assert_allclose(box.lower, np.clip(data.min(0) - 0.1 * width, 0, 1))
    np.testing.assert_allclose(box.upper, np.clip(data.max(0) + 0.1 * width, 0, 1))
    assert box.fixed.tolist() == [False, False, True, False, False, False]
    parts = balls(data[:3], 0.05, outer=Box(np.zeros(6), np.ones(6)))
    assert len(parts) == 3
    for x, p in zip(data[:3], parts):
        np.testing.assert_allclose(p.lower, np.clip(x - 0.05, 0, 1))
        np.testing.assert_allclose(p.upper, np.clip(x + 0.05, 0, 1))
    with pytest.raises(DomainError, match="outside the outer box"):
        balls(data[:1] + 2, 0.1, outer=Box(np.zeros(6), np.ones(6)))


def test_domain_cli_builds_shows_and_feeds_compress(tmp_path, capsys):
    Ws, bs = random_weights([4, 6, 5, 2], seed=3)
    model = tmp_path / "m.onnx"
    model.write_bytes(onnx_mlp(Ws, bs).SerializeToString())
    points = tmp_path / "points.npy"
    np.save(points, np.random.default_rng(1).random((3, 4)))
    balls_file = tmp_path / "balls.json"
    assert main(["domain", "ball", str(points), "--eps", "0.05", "--clip", "0", "1", "--model", str(model),
                 "-o", str(balls_file)]) == 0
    assert len(json.loads(balls_file.read_text())["parts"]) == 3
    assert main(["domain", "ball", str(points), "--eps", "0.05", "-o", str(points)]) == 2   # never overwrite an input
    assert np.load(points).shape == (3, 4)
    data_file = tmp_path / "range.json"
    assert main(["domain", "from-data", str(points), "--margin", "0.5", "-o", str(data_file)]) == 0
    capsys.readouterr()
    assert main(["domain", "show", str(balls_file), str(data_file), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["boxes"] == 4 and info["dimensions"] == 4
    report, out = tmp_path / "r.json", tmp_path / "small.onnx"
    assert main(["compress", str(model), "--domain", str(balls_file), "--domain", str(data_file), "-o", str(out),
                 "--report", str(report), "-q"]) == 0
    rep = json.loads(report.read_text())
    expected = hashlib.sha256(balls_file.read_bytes() + data_file.read_bytes()).hexdigest()
    assert rep["domain_info"] == {"sources": [str(balls_file), str(data_file)], "sha256": expected, "dimensions": 4,
                                  "boxes": 4, "fixed_inputs": 0}
    assert rep["verification"]["passed"]
    assert main(["verify", str(model), str(out), "--domain", str(balls_file), "--domain", str(data_file)]) == 0
    # the compressed model agrees with the original on points of every box (onnxruntime)
    import exactcomp

    domain = exactcomp.load_domain(exactcomp.load(model), balls_file, data_file)   # the top-level API name
    assert isinstance(domain, exactcomp.Domain)
    rng = np.random.default_rng(2)
    x = np.vstack([p.sample(200, rng) for p in domain.parts])
    np.testing.assert_allclose(run_onnx(str(out), x)[0], run_onnx(str(model), x)[0], rtol=1e-5, atol=1e-5)


def test_written_vnnlib_reads_back_as_the_same_boxes(tmp_path):
    points = tmp_path / "p.npy"
    np.save(points, np.random.default_rng(4).random((2, 5)))
    as_json, as_vnnlib = tmp_path / "b.json", tmp_path / "b.vnnlib"
    for out in (as_json, as_vnnlib):
        assert main(["domain", "ball", str(points), "--eps", "0.1", "--clip", "0", "1", "-o", str(out)]) == 0
    boxes = read_vnnlib_boxes(as_vnnlib, 5)
    parts = json.loads(as_json.read_text())["parts"]
    assert len(boxes) == len(parts) == 2
    for (lo, hi), part in zip(boxes, parts):
        assert lo.tolist() == part["lower"] and hi.tolist() == part["upper"]   # repr round-trips float64 exactly


@pytest.mark.parametrize("array,words", [
    (np.zeros((0, 4)), "holds no inputs"),
    (np.full((2, 4), np.nan), "NaN"),
    (np.array(["a", "b"]), "real numbers"),
])
def test_domain_cli_refuses_bad_arrays_in_one_line(tmp_path, array, words):
    from .faults import assert_one_line_error, cli

    path = tmp_path / "bad.npy"
    np.save(path, array)
    for action in (["from-data", str(path)], ["ball", str(path), "--eps", "0.1"]):
        r = cli("domain", *action, "-o", tmp_path / "out.json")
        assert_one_line_error(r, 2, words)
        assert not (tmp_path / "out.json").exists()
