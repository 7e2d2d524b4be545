"""The Python API, mirroring the CLI: :func:`load`, :func:`analyze`, :func:`compress`, :func:`verify`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from exactcomp.analysis import Analysis, AnalysisOptions
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
    """Raise :class:`~exactcomp.errors.ModelError` if ``network``, or the constant network it may
    compress to, cannot be written as ONNX (see :func:`exactcomp.io.onnx_export.check_exportable`);
    cheap, so call it before a long analysis."""
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
    :class:`~exactcomp.domains.union.Domain` for a union of boxes: each box is analysed (with the whole
    time budget) and the results merged by the union rule (:mod:`exactcomp.domains.merge`).
    Keyword arguments override fields of :class:`AnalysisOptions` (e.g. ``samples=array``).
    """
    from exactcomp.domains.merge import merge_analyses

    options = options or AnalysisOptions(**kwargs)
    whole = _as_domain(network, box)
    if len(whole.parts) == 1:
        return _analyze(network, whole.parts[0], options, progress)
    if options.resume is not None:
        raise DomainError("--resume works with a single box; this domain has several")
    analyses = []
    for part in whole.parts:
        samples = options.samples
        part_options = options if samples is None else replace(options, samples=samples[part.contains(samples)])
        analyses.append(_analyze(network, part, part_options, progress))
        if analyses[-1].interrupted:
            break
    if len(analyses) < len(whole.parts):   # interrupted: the other boxes are not analysed, so nothing is stable
        return _nothing_decided(network, whole, analyses)
    return merge_analyses(network, whole, analyses)


def _nothing_decided(network: Network, whole, analyses) -> Analysis:
    """After an interrupt before every box was analysed: bounds and unstable neurons of the boxes done,
    every other neuron unknown (``interrupted``)."""
    from exactcomp.analysis import LayerAnalysis, Status
    from exactcomp.domains.merge import merge_analyses

    done = merge_analyses(network, whole, analyses) if len(analyses) > 1 else analyses[0]
    layers = []
    for la in done.layers:
        status, method = la.status.copy(), la.method.copy()
        stable = (status == Status.ACTIVE) | (status == Status.INACTIVE)
        status[stable], method[stable] = Status.UNKNOWN, "interrupted"
        layers.append(LayerAnalysis(la.layer_id, status, method, np.full(la.lower.shape, -np.inf),
                                    np.full(la.upper.shape, np.inf), la.witness_pos, la.witness_neg))
    return Analysis(network, whole.hull, tuple(layers), done.witnesses, done.times, True, done.stats, done.options)


@dataclass(frozen=True, eq=False)
class CompressionResult:
    """An original network, its exact compression on the analysed box, and how it was obtained."""

    original: Network
    compressed: Network
    analysis: Analysis
    times: dict = field(default_factory=dict)

    def to_onnx(self):
        from exactcomp.io.onnx_export import to_onnx

        return to_onnx(self.compressed)

    def save(self, path: str | Path) -> Path:
        from exactcomp.io.onnx_export import save_onnx

        return save_onnx(self.compressed, path)


def compress(network: Network | str | Path, box, analysis: Analysis | None = None, progress=None,
             **kwargs) -> CompressionResult:
    """Analyse (unless ``analysis`` is given) and rewrite ``network`` into an equivalent smaller one."""
    times = {}
    if not isinstance(network, Network):
        t0 = time.perf_counter()
        network = load(network)
        times["import"] = time.perf_counter() - t0
    if analysis is None:
        analysis = analyze(network, box, progress=progress, **kwargs)
    times.update(analysis.times)
    t0 = time.perf_counter()
    compressed = compress_network(network, analysis)
    times["rewrite"] = time.perf_counter() - t0
    return CompressionResult(network, compressed, analysis, times)


def verify(original, compressed, box, extra_points=None, **kwargs) -> VerificationResult:
    """Compare two ONNX models (paths, ModelProtos or Networks) with onnxruntime on ``box``.

    ``box`` may be a path to a box file, a dict or a :class:`Box`. The default tolerance follows the
    original's compute type (``exactcomp.verify.compare.TOLERANCES``); see :mod:`exactcomp.verify.compare`.
    """
    from exactcomp.io.onnx_export import to_onnx
    from exactcomp.io.onnx_import import import_model

    models = [to_onnx(m) if isinstance(m, Network) else m for m in (original, compressed)]
    ref = original if isinstance(original, Network) else import_model(original)
    kwargs.setdefault("dtype", ref.compute_dtype)
    return verify_models(models[0], models[1], _as_domain(ref, box), extra_points=extra_points, **kwargs)
