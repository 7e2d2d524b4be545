"""What a proof can still buy (issue 23, :mod:`exactcomp.rewrite.payoff`): the needed masks against decisions
forced one neuron at a time and compressed (the oracle), the channel rule stated on its own, and the
``not_needed`` status end to end (same written model as ``--complete``, onnxruntime-checked, counted apart)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import exactcomp
from exactcomp.cli.main import main
from exactcomp.domain import Box
from exactcomp.io.onnx_export import to_onnx
from exactcomp.ir.conv import Conv
from exactcomp.ir.network import Dense, Network, TensorInfo
from exactcomp.provers.state import Outcome
from exactcomp.results import Status
from exactcomp.rewrite.payoff import needed_masks, written_size

from .conftest import random_network, run_onnx


def _cnn(seed: int, reader: str) -> Network:
    """1x5x5 -> conv 3 ch 2x2 (3x4x4) -> conv 2 ch 2x2 (2x3x3) or dense 6 -> dense 1."""
    rng = np.random.default_rng(seed)
    c1 = Conv(rng.normal(size=(3, 1, 2, 2)), rng.normal(size=3), (1, 5, 5), 1, np.arange(48))
    nxt = (Conv(rng.normal(size=(2, 3, 2, 2)), rng.normal(size=2), (3, 4, 4), 2, np.arange(18)) if reader == "conv"
           else Dense(rng.normal(size=(6, 48)), rng.normal(size=6), 2, np.arange(6)))
    out = Dense(rng.normal(size=(1, nxt.width)), rng.normal(size=1), 3, np.arange(1))
    info = TensorInfo("x", (1, 5, 5), "float64")
    return Network((c1, nxt, out), info, TensorInfo("y", (1,), "float64"), (TensorInfo("y", (1,), "float64"),), "float64")


def _random_state(net: Network, rng):
    """Random statuses (a third decided), the open neurons, and which of them no input showed positive."""
    statuses, open_, inactive = [], [], []
    for layer in net.hidden:
        s = rng.choice([Status.ACTIVE, Status.INACTIVE, Status.UNSTABLE, Status.UNKNOWN],
                       p=[0.1, 0.15, 0.1, 0.65], size=layer.width).astype(np.int8)
        statuses.append(s)
        open_.append(s == Status.UNKNOWN)
        inactive.append(rng.random(layer.width) < 0.7)
    return statuses, open_, inactive


def _forced_payoff(net, box, statuses, open_, inactive, k, j) -> int:
    """The oracle: parameters removed by deciding neuron ``(k, j)`` (its witnesses' way) when every other open
    neuron goes the best way too, against leaving it undecided: two compressions."""
    best = [s.copy() for s in statuses]
    for s, o, i in zip(best, open_, inactive):
        s[o & i], s[o & ~i] = Status.INACTIVE, Status.ACTIVE
    undecided = [s.copy() for s in best]
    undecided[k][j] = Status.UNKNOWN
    return written_size(net, box, undecided) - written_size(net, box, best)


@pytest.mark.parametrize("kind,seed", [("conv", 0), ("conv", 1), ("dense", 2), ("dense", 3), ("mlp", 4), ("mlp", 5)])
def test_every_neuron_whose_forced_decision_pays_is_needed(kind, seed):
    rng = np.random.default_rng(seed)
    net = random_network([6, 8, 7, 3], seed=seed) if kind == "mlp" else _cnn(seed, kind)
    box = Box(np.zeros(net.input_size), np.ones(net.input_size))
    statuses, open_, inactive = _random_state(net, rng)
    needed = needed_masks(net, box, statuses, open_, inactive)
    paying = 0
    for k in range(len(statuses)):
        assert not (needed[k] & ~open_[k]).any(), "only open neurons can be needed"
        for j in np.flatnonzero(open_[k]):
            if _forced_payoff(net, box, statuses, open_, inactive, k, j) != 0:
                paying += 1
                assert needed[k][j], f"layer {k} neuron {j}: its decision pays but it was left out"
    assert paying > 0


def test_a_channel_read_by_a_convolution_stops_paying_once_its_reader_sees_it_vary_everywhere():
    """Channel 1 of the first convolution has its centre 2x2 positions unstable: every 2x2 window of the next
    convolution reads one of them, so no position of the reader can become constant and the channel stays:
    its other positions buy nothing. (With fewer unstable positions they can: positions of the reader that
    read only inactive entries are constant, and the dense layer after it drops their columns.)"""
    net = _cnn(0, "conv")
    box = Box(np.zeros(25), np.ones(25))
    statuses = [np.full(48, Status.UNKNOWN, np.int8), np.full(18, Status.UNSTABLE, np.int8)]
    statuses[0][16 + np.array([5, 6, 9, 10])] = Status.UNSTABLE
    open_ = [statuses[0] == Status.UNKNOWN, np.zeros(18, bool)]
    needed = needed_masks(net, box, statuses, open_, [np.ones(48, bool), np.ones(18, bool)])
    channels = needed[0].reshape(3, 16)
    assert not channels[1].any()                     # the channel stays whatever its other positions do
    assert channels[0].all() and channels[2].all()   # these can still be removed whole


def test_inactive_dense_neurons_always_pay_and_independent_active_ones_do_not():
    net = random_network([6, 8, 7, 3], seed=9)
    box = Box(np.zeros(6), np.ones(6))
    statuses = [np.full(8, Status.UNKNOWN, np.int8), np.full(7, Status.UNSTABLE, np.int8)]
    statuses[0][6:] = Status.UNSTABLE                # so the layer can never become linear and merge
    can_be_inactive = [np.arange(8) < 3, np.ones(7, bool)]   # 3 inactive and 3 active candidates
    needed = needed_masks(net, box, statuses, [statuses[0] == Status.UNKNOWN, np.zeros(7, bool)], can_be_inactive)
    assert needed[0][:3].all()                       # a removed row and column each
    assert not needed[0][3:].any()                   # 3 random rows over 6 inputs are independent: nothing folds
    statuses[0][6:] = Status.UNKNOWN                 # open instead: all active would merge the layer, so they pay
    can_be_inactive[0][6:] = False
    needed = needed_masks(net, box, statuses, [statuses[0] == Status.UNKNOWN, np.zeros(7, bool)], can_be_inactive)
    assert needed[0][3:].all()


def _open_cnn() -> tuple[Network, Box]:
    rng = np.random.default_rng(3)
    bias = np.array([0.3, -40.0, 0.2, -0.1])
    c1 = Conv(rng.normal(size=(4, 1, 3, 3)), bias, (1, 6, 6), 1, np.arange(64))
    c2 = Conv(rng.normal(size=(2, 4, 2, 2)), rng.normal(size=2), (4, 4, 4), 2, np.arange(18))
    out = Dense(rng.normal(size=(2, 18)), rng.normal(size=2), 3, np.arange(2))
    info = TensorInfo("x", (1, 6, 6), "float32")
    net = Network((c1, c2, out), info, TensorInfo("y", (2,), "float32"), (TensorInfo("y", (2,), "float32"),))
    return net, Box(np.zeros(36), np.ones(36))


def test_not_needed_neurons_leave_the_written_model_as_complete_does():
    net, box = _open_cnn()
    fast = exactcomp.compress(net, box)
    full = exactcomp.compress(net, box, complete=True)
    assert fast.parameters_after == full.parameters_after < fast.parameters_before
    assert full.analysis.totals()["not_needed"] == 0
    stable = [Status.ACTIVE, Status.INACTIVE]
    for la_fast, la_full in zip(fast.analysis.layers, full.analysis.layers):   # what both decided, they agree on
        both = np.isin(la_fast.status, stable) & np.isin(la_full.status, stable)
        assert np.array_equal(la_fast.status[both], la_full.status[both])
    X = box.sample(2000, np.random.default_rng(1))
    np.testing.assert_allclose(run_onnx(to_onnx(fast.compressed), X.astype(np.float32).reshape(-1, 1, 6, 6))[0],
                               net.forward(X), rtol=1e-4, atol=1e-4)


class _Points:
    """A prover that offers fixed inputs as witnesses (a stand-in for a witness search that found some)."""

    name = "points"

    def __init__(self, points):
        self.points = points

    def run(self, state, progress=None):
        yield Outcome(points=self.points)


class _Recorder:
    """A prover that records the candidates the schedule hands it and decides nothing."""

    name = "recorder"

    def __init__(self):
        self.offered = None

    def run(self, state, progress=None):
        self.offered = state.open_candidates()
        yield from ()


def _partly_witnessed(complete: bool, seed: int = 0):
    net = _cnn(seed, "conv")
    box = Box(np.zeros(25), np.ones(25))
    recorder = _Recorder()
    points = box.sample(6, np.random.default_rng(seed))
    result = exactcomp.compress(net, box, complete=complete, provers=("bounds", _Points(points), recorder))
    return net, box, result, recorder


def test_provers_are_offered_only_what_pays_and_the_rest_is_not_needed():
    net, box, spared, offered = _partly_witnessed(complete=False)
    _, _, plain, offered_all = _partly_witnessed(complete=True)
    assert spared.parameters_after == plain.parameters_after
    totals, plain_totals = spared.analysis.totals(), plain.analysis.totals()
    assert totals["not_needed"] > 0 and plain_totals["not_needed"] == 0
    assert totals["not_needed"] + totals["unknown"] == plain_totals["unknown"]
    spared_ids = {(k, int(j)) for k, la in enumerate(spared.analysis.layers) for j in np.flatnonzero(la.status == Status.NOT_NEEDED)}
    # a prover after the screening runs only while something that pays is open (None: it was skipped)
    assert not spared_ids & {(c.layer, c.neuron) for c in offered.offered or ()}
    assert spared_ids <= {(c.layer, c.neuron) for c in offered_all.offered}
    # the oracle: deciding a not-needed neuron either way leaves the written size as it is
    statuses = [la.status.copy() for la in spared.analysis.layers]
    for s in statuses:
        s[s == Status.NOT_NEEDED] = Status.UNKNOWN
    base = written_size(net, box, statuses)
    _, pre = net.forward(box.sample(6, np.random.default_rng(0)), return_preactivations=True)   # the witnesses
    for k, j in sorted(spared_ids):
        allowed = [s for s, seen in ((Status.ACTIVE, pre[k][:, j] < 0), (Status.INACTIVE, pre[k][:, j] > 0))
                   if not seen.any()]                # a decision that a witness contradicts cannot be proven
        for forced in allowed:
            trial = [s.copy() for s in statuses]
            trial[k][j] = forced
            assert written_size(net, box, trial) == base


def test_report_and_table_count_not_needed_apart(tmp_path):
    from exactcomp.cli.report import summary_lines, summary_table
    from rich.console import Console

    _, _, spared, _ = _partly_witnessed(complete=False)
    _, _, plain, _ = _partly_witnessed(complete=True)
    a, b = spared.report(), plain.report()
    assert a["totals"]["not_needed"] == spared.analysis.totals()["not_needed"] > 0 and b["totals"]["not_needed"] == 0
    assert sum(e["not_needed"] for e in a["layers"]) == a["totals"]["not_needed"]
    assert a["totals"]["kept"] == b["totals"]["kept"]
    assert a["analysis"]["complete"] is False and b["analysis"]["complete"] is True
    console = Console(record=True, width=200)
    console.print(summary_table(a))
    assert "not needed" in console.export_text()
    console = Console(record=True, width=200)
    console.print(summary_table(b))
    assert "not needed" not in console.export_text()
    assert any(line.startswith("not needed") for line in summary_lines(a))


def test_cli_complete_flag(tmp_path):
    net, box = _open_cnn()
    model = tmp_path / "cnn.onnx"
    model.write_bytes(to_onnx(net).SerializeToString())
    (tmp_path / "box.json").write_text(json.dumps({"lower": box.lower.tolist(), "upper": box.upper.tolist()}))
    args = [str(model), "--domain", str(tmp_path / "box.json"), "--quiet"]
    assert main(["compress", *args, "-o", str(tmp_path / "a.onnx"), "--report", str(tmp_path / "a.json")]) == 0
    assert main(["compress", *args, "--complete", "-o", str(tmp_path / "b.onnx"), "--report", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["parameters"]["after"] == b["parameters"]["after"]
    assert a["analysis"]["complete"] is False and b["analysis"]["complete"] is True
    assert b["totals"]["not_needed"] == 0


def _witnessed_best(net, box, result, points):
    """The oracle of what is left: the written size now, and with every undecided neuron decided the way the
    witness ``points`` allow (inactive unless one of them showed it positive)."""
    _, pre = net.forward(points, return_preactivations=True)
    now = [la.status.copy() for la in result.analysis.layers]
    for s in now:
        s[s == Status.NOT_NEEDED] = Status.UNKNOWN
    best = [s.copy() for s in now]
    for k, s in enumerate(best):
        open_ = s == Status.UNKNOWN
        positive = (pre[k] > 0).any(axis=0)
        s[open_ & ~positive], s[open_ & positive] = Status.INACTIVE, Status.ACTIVE
    return written_size(net, box, now), written_size(net, box, best)


def _hidden_dead_mlp(extra: int, seed: int) -> Network:
    """[0,1]^2 -> (relu(x-y), relu(y-x), relu(x), relu(y)) -> n = a - b - c + d - 0.1 = -0.1 everywhere (dead, but
    interval and symbolic bounds leave it open), beside ``extra`` random neurons -> dense 2."""
    rng = np.random.default_rng(seed)
    w1 = np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    w2 = np.vstack([[1.0, -1.0, -1.0, 1.0], rng.normal(size=(extra, 4))])
    b2 = np.concatenate([[-0.1], rng.normal(size=extra)])
    layers = (Dense(w1, np.zeros(4), 1, np.arange(4)), Dense(w2, b2, 2, np.arange(1 + extra)),
              Dense(rng.normal(size=(2, 1 + extra)), rng.normal(size=2), 3, np.arange(2)))
    info = TensorInfo("x", (2,), "float64")
    return Network(layers, info, TensorInfo("y", (2,), "float64"), (TensorInfo("y", (2,), "float64"),), "float64")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_gain_stops_the_proofs_and_bounds_what_was_left(seed):
    net, box = _hidden_dead_mlp(3, seed), Box(np.zeros(2), np.ones(2))
    points = box.sample(50, np.random.default_rng(seed))
    runs = {}
    for gain in (0.0, 0.99):
        recorder = _Recorder()
        result = exactcomp.compress(net, box, min_gain=gain, provers=("bounds", _Points(points), recorder))
        runs[gain] = result, recorder
    (full, offered), (stopped, skipped) = runs[0.0], runs[0.99]
    now, best = _witnessed_best(net, box, stopped, points)
    assert now == stopped.parameters_after and stopped.analysis.gain_left == now - best > 0   # the oracle
    assert (1, 0) in {(c.layer, c.neuron) for c in offered.offered}   # the dead neuron pays and stays open
    assert skipped.offered is None                                   # ... but the prover never ran
    assert stopped.analysis.gain_left < 0.99 * net.parameter_count
    reasons = np.concatenate([la.method[la.status == Status.UNKNOWN] for la in stopped.analysis.layers])
    assert reasons.size and set(reasons) == {"low_gain"}
    assert not any("low_gain" in set(la.method) for la in full.analysis.layers)
    from exactcomp.cli.report import summary_lines

    line = [x for x in summary_lines(stopped.report()) if x.startswith("low gain")]
    assert len(line) == 1 and f"at most {now - best} more parameters" in line[0]
    assert not any(x.startswith("low gain") for x in summary_lines(full.report()))
    assert stopped.parameters_after == full.parameters_after         # nothing was decided after the screening
    X = box.sample(500, np.random.default_rng(9))
    np.testing.assert_allclose(run_onnx(to_onnx(stopped.compressed), X)[0], net.forward(X), rtol=1e-9, atol=1e-9)
    proven = exactcomp.compress(net, box, min_gain=0.0)             # the real schedule proves it dead
    assert proven.analysis.layers[1].status[0] == Status.INACTIVE and proven.parameters_after == best


def test_the_size_record_ends_at_the_written_size_and_never_grows():
    net, box = _open_cnn()
    for complete in (False, True):
        result = exactcomp.compress(net, box, complete=complete, time_limit=30)
        sizes = result.analysis.sizes
        assert sizes and sizes[-1][1] == result.parameters_after
        assert all(b[0] >= a[0] and b[1] < a[1] for a, b in zip(sizes, sizes[1:]))
        assert result.report()["analysis"]["sizes"] == [list(x) for x in sizes]
    assert exactcomp.analyze(net, box).sizes == ()                   # the research API records nothing


def test_cli_min_gain(tmp_path, capsys):
    net, box = _open_cnn()
    model = tmp_path / "cnn.onnx"
    model.write_bytes(to_onnx(net).SerializeToString())
    (tmp_path / "box.json").write_text(json.dumps({"lower": box.lower.tolist(), "upper": box.upper.tolist()}))
    args = ["compress", str(model), "--domain", str(tmp_path / "box.json"), "--quiet"]
    assert main([*args, "--min-gain", "0.5%", "-o", str(tmp_path / "a.onnx"), "--report", str(tmp_path / "a.json")]) == 0
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["analysis"]["min_gain"] == pytest.approx(0.005) and report["analysis"]["gain_left"] is not None
    for bad in (["--min-gain", "1.5"], ["--min-gain", "-0.1"], ["--min-gain", "x"], ["--complete", "--min-gain", "0.01"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            code = main(args + bad + ["-o", str(tmp_path / "b.onnx")])
            raise SystemExit(code)
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "min-gain" in err[0].replace("min_gain", "min-gain"), err
        assert not (tmp_path / "b.onnx").exists()


def test_progress_notes_show_the_size_so_far():
    class Notes:
        def __init__(self):
            self.seen = []

        def phase(self, name, total):
            return lambda done, total_, note="": self.seen.append((name, note))

    net, box = _hidden_dead_mlp(3, 0), Box(np.zeros(2), np.ones(2))
    notes = Notes()
    result = exactcomp.compress(net, box, min_gain=0.0, progress=notes)
    sizes = {f"{size:,} params" for _, size in result.analysis.sizes}
    proving = [note for name, note in notes.seen if name not in ("bounds", "random points", "witness search")]
    assert proving and all(any(s in note for s in sizes) for note in proving)


@pytest.mark.parametrize("kind,seed", [("conv", 0), ("dense", 2), ("mlp", 4)])
def test_worth_is_the_share_of_what_deciding_the_group_buys(kind, seed):
    from exactcomp.rewrite.payoff import assess

    rng = np.random.default_rng(seed)
    net = random_network([6, 9, 7, 3], seed) if kind == "mlp" else _cnn(seed, kind)
    box = Box(np.zeros(net.input_size), np.ones(net.input_size))
    statuses, open_, inactive = _random_state(net, rng)
    a = assess(net, box, statuses, open_, inactive)
    for k in range(len(net.hidden)):
        assert np.all(a.worth[k][~a.needed[k]] == 0) and np.all(a.worth[k][a.needed[k]] > 0)
        for j in np.flatnonzero(a.needed[k]):
            alone = _forced_payoff(net, box, statuses, open_, inactive, k, j)
            assert alone <= a.worth[k][j] * a.needed[k].sum() + 1e-9     # a group buys at least what one of it does


def test_the_portfolio_proves_what_is_worth_most_first_with_the_larger_share(monkeypatch):
    import exactcomp.provers.portfolio as portfolio
    from exactcomp.provers.state import ProofState

    seen = []

    def record(state, checks, c, seconds, has_torch, final=True):
        seen.append((c.layer, c.neuron, seconds))
        yield from ()

    monkeypatch.setattr(portfolio, "race", record)
    monkeypatch.setattr(ProofState, "worth", lambda self, c: 1.0 + c.neuron % 3)   # a stand-in payoff
    net = random_network([4, 8, 8, 2], 5)
    box = Box(np.zeros(4), np.ones(4))
    exactcomp.analyze(net, box, time_limit=60, provers=("bounds", "portfolio"))
    first_round = []
    for layer, j, seconds in seen:
        if (layer, j) in {(a, b) for a, b, _ in first_round}:
            break
        first_round.append((layer, j, seconds))
    order = [(layer, -(1.0 + j % 3)) for layer, j, _ in first_round]
    assert len(first_round) >= 3 and order == sorted(order)      # layer by layer, worth most first
    worth = [1.0 + j % 3 for _, j, _ in first_round]
    left = first_round[-1][2]                                     # the last one gets all that is left
    assert len(set(worth)) > 1 and first_round[0][2] == pytest.approx(left * worth[0] / sum(worth), rel=0.01)


def test_the_report_lists_the_provers_that_ran():
    net, box = _hidden_dead_mlp(3, 0), Box(np.zeros(2), np.ones(2))
    schedule = ("bounds", _Points(box.sample(50, np.random.default_rng(0))), _Recorder())
    ran = {gain: exactcomp.compress(net, box, provers=schedule, min_gain=gain).report()["analysis"]["provers"]
           for gain in (0.0, 0.99)}
    assert ran == {0.0: ["bounds", "points", "recorder"], 0.99: ["bounds"]}   # nothing worth it: the rest skipped
    split = exactcomp.compress(net, box, min_gain=0.0, time_limit=20)   # input splitting decides it all (2 inputs)
    assert split.analysis.layers[1].status[0] == Status.INACTIVE
    assert split.report()["analysis"]["provers"] == ["bounds", "witnesses", "input-split"]   # lp, portfolio: skipped


def test_a_failing_payoff_falls_back_to_deciding_everything():
    def broken(*args):
        raise ValueError("a bug in a payoff")

    net, box = _hidden_dead_mlp(3, 0), Box(np.zeros(2), np.ones(2))
    analysis = exactcomp.analyze(net, box, payoff=broken, time_limit=20)
    assert analysis.stats["payoff_errors"] == 1 and analysis.totals()["not_needed"] == 0
    assert analysis.layers[1].status[0] == Status.INACTIVE
