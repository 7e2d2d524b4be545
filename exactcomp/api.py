"""The Python API, mirroring the CLI: :func:`load`, :func:`analyze`, :func:`compress`, :func:`verify`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from exactcomp.options import AnalysisOptions
from exactcomp.results import Analysis
from exactcomp.analysis import analyze as _analyze
from exactcomp.domain import Box, load_samples, make_box
from exactcomp.errors import DomainError
from exactcomp.ir.network import Network
from exactcomp.rewrite.rules import compress_network
from exactcomp.verify.compare import VerificationResult, verify_models

if TYPE_CHECKING:
    from exactcomp.domains.union import Domain


def load(path: str | Path) -> Network:
    """Import an ONNX ReLU MLP into the immutable layer-graph IR."""
    from exactcomp.io.onnx_import import import_model

    return import_model(path)


def check_exportable(network: Network) -> None:
    """Raise :class:`~exactcomp.errors.ModelError` if ``network``, or the constant network it may compress to,
    cannot be written as ONNX (:func:`exactcomp.io.onnx_export.check_exportable`; cheap: call it first)."""
    from exactcomp.io.onnx_export import check_exportable as _check

    _check(network)


def domain(network: Network, source) -> Box:
    """A :class:`Box` for ``network``'s input from a box file path, a dict, or a ``Box``."""
    if isinstance(source, Box):
        if source.size != network.input_size:
            raise DomainError(f"domain has {source.size} entries, model input has {network.input_size}")
        return source
    if isinstance(source, dict):
        missing = [k for k in ("lower", "upper") if k not in source]
        if missing:
            raise DomainError(f"domain: missing field '{missing[0]}'")
        return make_box(source["lower"], source["upper"], network.input.shape)
    whole = load_domain(network, source)
    if len(whole.parts) != 1:
        raise DomainError(f"{source}: holds {len(whole.parts)} boxes; use exactcomp.load_domain for a union")
    return whole.parts[0]


def load_domain(network: Network, *sources) -> "Domain":
    """A :class:`~exactcomp.domains.union.Domain` (one box, or several whose union is the domain) from box
    JSON and VNN-LIB files, dicts, :class:`Box` es or a Domain."""
    from exactcomp.domains.union import Domain, load_domain as _load

    if len(sources) == 1 and isinstance(sources[0], Domain):
        if sources[0].size != network.input_size:
            raise DomainError(f"domain has {sources[0].size} entries, model input has {network.input_size}")
        return sources[0]
    files = [s for s in sources if isinstance(s, (str, Path))]
    parts = [domain(network, s) for s in sources if not isinstance(s, (str, Path))]
    loaded = _load(files, network.input.shape) if files else None
    return Domain((*(loaded.parts if loaded else ()), *parts), loaded.sources if loaded else (),
                  loaded.sha256 if loaded else None)


def _as_domain(network: Network, box) -> "Domain":
    return load_domain(network, *box) if isinstance(box, (list, tuple)) else load_domain(network, box)


def samples(network: Network, path: str | Path) -> np.ndarray:
    """Load user sample points (``.npy``) shaped like the model input."""
    return load_samples(path, network.input.shape)


def analyze(network: Network, box, options: AnalysisOptions | None = None, progress=None, **kwargs) -> Analysis:
    """Classify every hidden neuron (stably active/inactive, unstable, unknown) over ``box``.

    ``box``: a box (file, dict, :class:`Box`), a VNN-LIB file, or a list of them / a
    :class:`~exactcomp.domains.union.Domain` for a union of boxes: each box is analysed and the results
    merged by the union rule (:mod:`exactcomp.domains.merge`). ``time_limit`` is one budget for the whole
    union: box ``i`` of ``n`` gets the budget left divided by the ``n - i`` boxes still to come, so time a
    box leaves unused goes to the later ones and the proof phases of all boxes together stay within it (so does
    ``work_limit``).
    Keyword arguments override fields of :class:`AnalysisOptions` (e.g. ``samples=array``).
    The result records what it is valid for (:attr:`Analysis.valid_for`: this network, these boxes).
    """
    from exactcomp.domains.merge import merge_analyses
    from exactcomp.validity import Validity

    options = options or AnalysisOptions(**kwargs)
    whole = _as_domain(network, box)
    if len(whole.parts) == 1:
        return _analyze(network, whole.parts[0], options, progress)
    if options.resume is not None:
        raise DomainError("--resume works with a single box; this domain has several")
    analyses, spent, worked = [], 0.0, 0
    for i, part in enumerate(whole.parts):
        part_options = options
        if options.samples is not None:
            part_options = replace(part_options, samples=options.samples[part.contains(options.samples)])
        if options.work_limit is not None:   # the same rule in units of work: the same answer on any machine
            part_options = replace(part_options, work_limit=max((options.work_limit - worked) // (len(whole.parts) - i), 1))
        elif options.time_limit is not None:
            share = (options.time_limit - spent) / (len(whole.parts) - i)
            part_options = replace(part_options, time_limit=max(share, MIN_SHARE))
        analyses.append(_analyze(network, part, part_options, progress))
        spent += analyses[-1].proof_seconds
        worked += int(analyses[-1].stats.get("work", 0))
        if analyses[-1].interrupted:
            break
    if len(analyses) < len(whole.parts):   # interrupted: the other boxes are not analysed, so nothing is stable
        result = _nothing_decided(network, whole, analyses)
    else:
        result = merge_analyses(network, whole, analyses)
    return replace(result, options=options, valid_for=Validity.of(network, whole.parts, options.margin))


#: Smallest time share of a box of a union (seconds) once the budget is spent: its provers stop at once.
MIN_SHARE = 1e-3


def _nothing_decided(network: Network, whole, analyses) -> Analysis:
    """After an interrupt before every box was analysed: bounds and unstable neurons of the boxes done,
    every other neuron unknown (``interrupted``)."""
    from exactcomp.results import LayerAnalysis, Reason, Status
    from exactcomp.domains.merge import merge_analyses

    done = merge_analyses(network, whole, analyses) if len(analyses) > 1 else analyses[0]
    layers = []
    for la in done.layers:
        status, method = la.status.copy(), la.method.copy()
        stable = (status == Status.ACTIVE) | (status == Status.INACTIVE)
        status[stable], method[stable] = Status.UNKNOWN, Reason.INTERRUPTED
        layers.append(LayerAnalysis(la.layer_id, status, method, np.full(la.lower.shape, -np.inf),
                                    np.full(la.upper.shape, np.inf), la.witness_pos, la.witness_neg))
    return Analysis(network, whole.hull, tuple(layers), done.witnesses, done.times, True, done.stats, done.options,
                    schedule=done.schedule)


@dataclass(frozen=True, eq=False)
class CompressionResult:
    """An original network, its exact compression on ``domain``, and how it was obtained.

    ``source``: the ONNX file the original was read from (None when a Network was given); :meth:`save`
    verifies against it. Per-layer results: ``result.analysis.layers`` (:class:`LayerAnalysis`: ``status``,
    ``method``, bounds, :meth:`~LayerAnalysis.count`, :attr:`~LayerAnalysis.counts`); sizes:
    :attr:`parameters_before`, :attr:`parameters_after`, :attr:`removed_fraction`, :attr:`widths`.
    """

    original: Network
    compressed: Network
    analysis: Analysis
    times: dict = field(default_factory=dict)
    domain: "Domain | None" = None
    source: Path | None = None

    @property
    def parameters_before(self) -> int:
        return self.original.parameter_count

    @property
    def parameters_after(self) -> int:
        return self.compressed.parameter_count

    @property
    def removed_fraction(self) -> float:
        """Share of the parameters removed, in [0, 1] (negative if a fold made the network larger)."""
        return 1 - self.parameters_after / self.parameters_before if self.parameters_before else 0.0

    @property
    def widths(self) -> dict:
        """Layer widths (output layer included) ``{"before": [...], "after": [...]}``."""
        return {"before": self.original.widths, "after": self.compressed.widths}

    def to_onnx(self):
        from exactcomp.io.onnx_export import to_onnx

        return to_onnx(self.compressed)

    def report(self, **fields) -> dict:
        """The JSON report (schema ``exactcomp.report/1``, as ``exactcomp compress --report`` writes it,
        without verification unless :meth:`save` ran it)."""
        from exactcomp.report import build_report

        return build_report(self, model=self.source, **fields)

    def save(self, path: str | Path, *, verify: bool = True, witnesses: bool | str | Path = True,
             report: str | Path | None = None, seed: int = 0, provider: str = "cpu") -> Path:
        """Verify the compressed model against the original with onnxruntime (as ``exactcomp compress``
        does: random points, corners and witnesses of :attr:`domain`) and write it to ``path`` with its
        witnesses file (``witnesses=True``: beside it as ``NAME.witnesses.npy``; a path; or False) and,
        when given, the JSON report, all together or not at all (:mod:`exactcomp.pipeline`).
        A failed verification raises :class:`~exactcomp.errors.VerificationError` and writes nothing
        but the report. ``verify=False`` skips the check (not recommended). Returns ``path``."""
        from exactcomp import pipeline
        from exactcomp.errors import VerificationError
        from exactcomp.io.witness_file import stored_witnesses_path

        if self.domain is None:
            raise DomainError("this result has no domain to verify on; make it with exactcomp.compress")
        path = Path(path)
        witnesses_path = (stored_witnesses_path(path) if witnesses is True else
                          None if witnesses is False or witnesses is None else Path(witnesses))
        inputs = {"original model": self.source, **{f"domain file {s}": s for s in self.domain.sources}}
        outputs = pipeline.plan_outputs(path, witnesses_path, report, inputs)
        written = pipeline.finish(self, outputs, model_path=path, witnesses_path=witnesses_path,
                                  report_path=Path(report) if report is not None else None, verify_model=verify,
                                  original=str(self.source) if self.source is not None else None, seed=seed,
                                  provider=provider, report_fields={"model": self.source})
        if written.verification is not None and not written.verification.passed:
            raise VerificationError(f"{path}: not written: the compressed model differs from the original "
                                    f"(max abs error {written.verification.max_abs_error:.3e}); this is a bug, "
                                    "please report it")
        return path


def compress(network: Network | str | Path, box, analysis: Analysis | None = None, progress=None,
             complete: bool = False, min_gain: float | None = None, **kwargs) -> CompressionResult:
    """Analyse (unless ``analysis`` is given) and rewrite ``network`` into an equivalent smaller one on
    ``box`` (a box, VNN-LIB file, or a list of them for a union, as :func:`analyze`).

    The analysis spends its time only on neurons whose decision can still change the written model
    (:mod:`exactcomp.rewrite.payoff`) and ends when none is left; the others are reported
    :attr:`~exactcomp.results.Status.NOT_NEEDED`. ``complete=True`` decides every neuron the budget allows
    (what :func:`analyze` does by default); the written model is the same either way, given time.
    ``min_gain`` (default :data:`~exactcomp.rewrite.payoff.DEFAULT_MIN_GAIN`, a fraction of the parameters):
    the proofs stop once all the undecided neurons together could remove less (they end unknown, reason
    ``low_gain``; ``Analysis.gain_left`` bounds what was left); 0 tries everything the budget allows. Either
    way ``Analysis.sizes`` records the parameters written over time.

    A given ``analysis`` must have been made for this very network (same weights and structure) over a
    domain that holds ``box`` (each box inside an analysed box): anything else raises
    :class:`~exactcomp.validity.AnalysisMismatch` (an ExactcompError), since stability proven over one
    domain says nothing outside it. Analysis options (``kwargs``) cannot be combined with ``analysis``."""
    times, source = {}, None
    if not isinstance(network, Network):
        t0 = time.perf_counter()
        source = Path(network)
        network = load(network)
        times["import"] = time.perf_counter() - t0
    whole = _as_domain(network, box)
    if analysis is None:
        kwargs.setdefault("payoff", _payoff(complete, min_gain))
        analysis = analyze(network, whole, progress=progress, **kwargs)
    else:
        _check_given(analysis, network, whole, kwargs)
    times.update(analysis.times)
    t0 = time.perf_counter()
    compressed = compress_network(network, analysis)
    times["rewrite"] = time.perf_counter() - t0
    return CompressionResult(network, compressed, analysis, times, whole, source)


def _payoff(complete: bool, min_gain: float | None):
    from exactcomp.errors import ExactcompError
    from exactcomp.rewrite.payoff import DEFAULT_MIN_GAIN, Payoff

    if complete and min_gain:
        raise ExactcompError("compress: min_gain has no effect with complete=True (which decides every neuron)")
    gain = DEFAULT_MIN_GAIN if min_gain is None else float(min_gain)
    if not 0.0 <= gain < 1.0:
        raise ExactcompError(f"compress: min_gain must be a fraction of the parameters in [0, 1), got {min_gain!r}")
    return Payoff(skip_unneeded=not complete, min_gain=0.0 if complete else gain)


def _check_given(analysis, network: Network, whole, kwargs: dict) -> None:
    from exactcomp.errors import ExactcompError

    if not isinstance(analysis, Analysis):
        raise ExactcompError(f"analysis must be an exactcomp.Analysis (from exactcomp.analyze), got "
                             f"{type(analysis).__name__}")
    if kwargs:
        raise ExactcompError(f"compress: options {', '.join(sorted(kwargs))} configure a new analysis and cannot "
                             "change the one given (analysis=...); pass them to exactcomp.analyze")
    if analysis.valid_for is None:
        raise ExactcompError("compress: this analysis does not record what it is valid for (not made by "
                             "exactcomp.analyze?); analyse the network with exactcomp.analyze")
    analysis.valid_for.check(network, whole.parts)


def verify(original, compressed, box, extra_points=None, **kwargs) -> VerificationResult:
    """Compare two ONNX models (paths, ModelProtos or Networks) with onnxruntime on ``box``.

    ``box`` may be a path to a box file, a dict or a :class:`Box`. The default tolerance follows the
    original's compute type (``exactcomp.TOLERANCES``); see :mod:`exactcomp.verify.compare`.
    """
    from exactcomp.io.onnx_export import to_onnx
    from exactcomp.io.onnx_import import import_model

    models = [to_onnx(m) if isinstance(m, Network) else m for m in (original, compressed)]
    ref = original if isinstance(original, Network) else import_model(original)
    kwargs.setdefault("dtype", ref.compute_dtype)
    return verify_models(models[0], models[1], _as_domain(ref, box), extra_points=extra_points, **kwargs)
