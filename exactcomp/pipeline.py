"""What follows the analysis and the rewrite, one path for the command line and the API alike:
export the compressed network, verify it against the original with onnxruntime, choose the witnesses to
store, and write the outputs (model, witnesses file, report) together or not at all.

``exactcomp compress`` (:mod:`exactcomp.cli.compress`) and :meth:`exactcomp.CompressionResult.save` both
call :func:`finish`; the only differences are where the options come from.

Witnesses file: the analysis may cite thousands of witness points (two per unstable neuron, comparison
neurons of max poolings included). The file keeps at most :data:`MAX_WITNESS_BYTES` of them (and at least
one point): points cited by more of the model's neurons first (each neuron's ``g > 0`` and ``g < 0`` points
are the inputs on which a wrongly removed neuron would show), then those cited only by auxiliary comparison
neurons. Since every citation names exactly one point, ranking points by their citation count is the
greedy cover of the (neuron, sign) pairs. The report says how many were stored and how many dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exactcomp.errors import ExactcompError

#: Upper bound on the witnesses file (bytes of float64 points; the .npy header adds ~128 bytes).
MAX_WITNESS_BYTES = 2 * 2 ** 20

MODEL, REPORT, WITNESSES = "-o/--output", "--report", "--witnesses"


@dataclass(frozen=True)
class Written:
    """What :func:`finish` produced: the exported model, the verification (None when skipped), the witness
    points stored (or that would be stored) and how many were dropped, the report, and the files written."""

    model: object
    verification: object
    witnesses: np.ndarray
    witnesses_dropped: int
    report: dict
    files: tuple


def witnesses_to_store(analysis, max_bytes: int = MAX_WITNESS_BYTES) -> tuple[np.ndarray, int]:
    """The witness points worth storing, at most ``max_bytes`` of them (see module doc), and the number
    dropped. Order: most citations by model neurons first, then by comparison neurons, then first cited."""
    points = analysis.witnesses.reshape(len(analysis.witnesses), analysis.network.input_size)
    if not len(points):
        return points, 0
    limit = max(1, int(max_bytes) // (points.shape[1] * 8))
    if len(points) <= limit:
        return points, 0
    model_cites, aux_cites = np.zeros(len(points), np.int64), np.zeros(len(points), np.int64)
    auxiliary = {layer.layer_id for layer in analysis.network.hidden if getattr(layer, "auxiliary", False)}
    for la in analysis.layers:
        cited = np.concatenate([la.witness_pos[la.witness_pos >= 0], la.witness_neg[la.witness_neg >= 0]])
        target = aux_cites if la.layer_id in auxiliary else model_cites
        target += np.bincount(cited, minlength=len(points))
    order = np.lexsort((np.arange(len(points)), -aux_cites, -model_cites))[:limit]
    return points[np.sort(order)], len(points) - limit


def export(result) -> object:
    """The compressed network as an ONNX ModelProto (timed as ``export`` in ``result.times``)."""
    from exactcomp.io.onnx_export import to_onnx

    t0 = time.perf_counter()
    model = to_onnx(result.compressed)
    result.times["export"] = time.perf_counter() - t0
    return model


def verify(result, model, *, original=None, samples=None, seed: int = 0, provider: str = "cpu", **kwargs):
    """onnxruntime comparison of ``model`` with ``original`` (the source file, else the original network
    exported) on ``result.domain``: random points, corners, the analysis's witnesses and ``samples``
    (timed as ``verify``)."""
    from exactcomp.io.onnx_export import to_onnx
    from exactcomp.verify.compare import verify_models

    t0 = time.perf_counter()
    extra = result.analysis.witnesses.reshape(-1, result.original.input_size)
    if samples is not None:
        extra = np.vstack([extra, np.asarray(samples, float).reshape(len(samples), -1)])
    reference = original if original is not None else to_onnx(result.original)
    verification = verify_models(reference, model, result.domain, extra_points=extra, seed=seed,
                                 dtype=result.original.compute_dtype, provider=provider, **kwargs)
    result.times["verify"] = time.perf_counter() - t0
    return verification


def finish(result, outputs, *, model_path: Path, witnesses_path: Path | None = None,
           report_path: Path | None = None, verify_model: bool = True, original=None, samples=None,
           seed: int = 0, provider: str = "cpu", report_fields: dict | None = None) -> Written:
    """Export, verify (unless ``verify_model`` is false), and write through ``outputs`` (an
    :class:`~exactcomp.io.files.OutputSet` whose targets were added and checked under :data:`MODEL`,
    :data:`WITNESSES`, :data:`REPORT`): the model and its witnesses only when verification passed, the
    report in any case. The model's metadata records the witnesses file's SHA-256."""
    from exactcomp.report import build_report
    from exactcomp.io.files import json_bytes, npy_bytes
    from exactcomp.io.witness_file import WITNESSES_KEY, sha256_bytes

    model = export(result)
    verification = verify(result, model, original=original, samples=samples, seed=seed,
                          provider=provider) if verify_model else None
    ok = verification is None or verification.passed
    stored, dropped = witnesses_to_store(result.analysis)
    witness_bytes = None
    if witnesses_path is not None and ok:
        witness_bytes = npy_bytes(stored.reshape(-1, *result.original.input.shape))
        entry = model.metadata_props.add()
        entry.key, entry.value = WITNESSES_KEY, sha256_bytes(witness_bytes)
    report = build_report(result, output=model_path if ok else None, verification=verification,
                          witnesses_file=witnesses_path if witness_bytes is not None else None,
                          witnesses_bytes=len(witness_bytes) if witness_bytes is not None else None,
                          witnesses_stored=len(stored) if witness_bytes is not None else 0,
                          witnesses_dropped=dropped if witness_bytes is not None else 0,
                          **(report_fields or {}))
    model_bytes = model.SerializeToString()
    with outputs:
        if ok:
            outputs.stage(MODEL, lambda fh: fh.write(model_bytes))
            if witness_bytes is not None:
                outputs.stage(WITNESSES, lambda fh: fh.write(witness_bytes))
        if report_path is not None:
            report_bytes = json_bytes(report)
            outputs.stage(REPORT, lambda fh: fh.write(report_bytes))
        files = tuple(outputs.commit())
    return Written(model, verification, stored, dropped, report, files)


def plan_outputs(model_path, witnesses_path=None, report_path=None, inputs: dict | None = None):
    """An :class:`~exactcomp.io.files.OutputSet` with the three outputs added and checked against
    ``inputs`` (``{what: path}``) before any work."""
    from exactcomp.io.files import OutputSet

    model_path = Path(model_path)
    if model_path.is_dir() or not model_path.name:
        raise ExactcompError(f"{model_path}: {MODEL} is a directory; give a file name")
    outputs = OutputSet()
    outputs.add(MODEL, model_path)
    outputs.add(REPORT, report_path)
    outputs.add(WITNESSES, witnesses_path)
    outputs.check(inputs or {})
    return outputs
