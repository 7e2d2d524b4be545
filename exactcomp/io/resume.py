"""``--resume report.json``: continue an earlier analysis of the same model and domain.

The report of a run records what its analysis is valid for (``valid_for``: the SHA-256 of the network's
weights and structure, the boxes, the margin; :mod:`exactcomp.validity`), every neuron's status and method,
and the pre-activation bounds. A later run on the same network over the same box or a box inside it (the
check of ``exactcomp.compress(..., analysis=...)``), with the same margin τ, starts from them (reports of
older versions, without ``valid_for``: the same model files and the same box, by SHA-256): the earlier proofs and bounds are taken over (the report cannot carry the
certificates, so resumed proofs are counted in the statistics as ``resumed_proofs``), the earlier
witnesses are offered again (each re-checked by a float64 forward pass, as any witness) and the
provers work only on what is still unknown.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exactcomp.errors import ExactcompError


def model_sha256(path: str | Path) -> str:
    """SHA-256 over the ONNX file and, in order, the external-data files it refers to."""
    from exactcomp.io.onnx_meta import external_data_files

    digest = hashlib.sha256(Path(path).read_bytes())
    for extra in external_data_files(path):
        digest.update(Path(extra).read_bytes())
    return digest.hexdigest()


def domain_sha256(box) -> str:
    """SHA-256 of the box as float64 arrays (independent of how the file spells the numbers)."""
    return hashlib.sha256(np.asarray(box.lower, np.float64).tobytes() + np.asarray(box.upper, np.float64).tobytes()).hexdigest()


@dataclass(frozen=True)
class ResumeData:
    source: str
    layers: tuple          # (statuses, methods, lower, upper) per hidden layer
    witnesses: np.ndarray  # earlier witness inputs (rows), possibly empty


def load_resume(path: str | Path, net, box, model_path, margin: float) -> ResumeData:
    """Read and check an earlier report (see module doc); one-line ExactcompError when it does not fit."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExactcompError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExactcompError(f"{path}: not a readable JSON report ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(report, dict) or report.get("schema") != "exactcomp.report/1":
        raise ExactcompError(f"{path}: not an exactcomp report (schema exactcomp.report/1)")
    if report.get("valid_for") is not None:
        _check_validity(report["valid_for"], path, net, box)
    else:   # a report of an older exactcomp: the same files and the same box only
        if report.get("model_sha256") != model_sha256(model_path):
            raise ExactcompError(f"{path}: was written for another model than {model_path} (SHA-256 differs)")
        if report.get("domain_sha256") != domain_sha256(box):
            raise ExactcompError(f"{path}: was written for another domain (SHA-256 of the box differs)")
    if (report.get("analysis") or {}).get("margin") != margin:
        raise ExactcompError(f"{path}: was written with margin {(report.get('analysis') or {}).get('margin')}, "
                             f"this run uses {margin}; use the same --margin")
    entries = report.get("layers")
    widths = [layer.width for layer in net.hidden]
    if not isinstance(entries, list) or [e.get("neurons") for e in entries] != widths:
        raise ExactcompError(f"{path}: its layers do not match the model's hidden layers {widths}")
    layers = []
    for e in entries:
        try:
            lower = np.array([-np.inf if v is None else float(v) for v in e["lower"]])
            upper = np.array([np.inf if v is None else float(v) for v in e["upper"]])
            statuses, methods = list(e["neuron_status"]), list(e["neuron_method"])
        except (KeyError, TypeError, ValueError):
            raise ExactcompError(f"{path}: layer {e.get('layer')} lacks bounds or statuses (a report of an older "
                                 "exactcomp?)") from None
        layers.append((statuses, methods, lower, upper))
    return ResumeData(str(path), tuple(layers), _witnesses(report, path, net))


def _check_validity(data, path: Path, net, box) -> None:
    """The report's analysis must be of this network over a box holding ``box`` (:mod:`exactcomp.validity`):
    its proofs and bounds then hold on ``box``; its witnesses are re-checked (and clipped into the box)."""
    from exactcomp.validity import Validity

    try:
        validity = Validity.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ExactcompError(f"{path}: its 'valid_for' entry is malformed") from None
    validity.check(net, (box,), what=f"{path}")


def _witnesses(report: dict, path: Path, net) -> np.ndarray:
    """The earlier witness inputs, if their file is still there (any inputs will do: they are re-checked)."""
    name = (report.get("witnesses") or {}).get("file")
    empty = np.empty((0, net.input_size))
    if not name:
        return empty
    for candidate in (Path(name), path.parent / Path(name).name):
        try:
            points = np.load(candidate, allow_pickle=False)
        except (OSError, ValueError):
            continue
        if points.dtype.kind == "f" and points.size % net.input_size == 0:
            points = points.reshape(-1, net.input_size)
            return points[np.isfinite(points).all(axis=1)]
    return empty
