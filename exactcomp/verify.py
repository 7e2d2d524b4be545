"""Check a compressed model against its original with onnxruntime.

Both models run on the same points: uniform random points of the box, box corners (all of them
when the input has at most 12 entries, otherwise random corners), and any witnesses/extra points
supplied. A model with a fixed batch size ``k`` runs them ``k`` at a time (the last chunk padded,
the padding's outputs dropped). Every floating-point output must satisfy, elementwise,

    |compressed - original| <= atol + rtol * |original|,   atol = ATOL * max(1, max|original|)

with the defaults ``RTOL = 1e-4`` and ``ATOL = 1e-5``: float32 evaluation of differently folded
but mathematically equal weights differs by a few units in the last place, far below this; a
changed function exceeds it. Non-float outputs (labels) must be equal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .domain import Box
from .errors import ModelError

RTOL = 1e-4
ATOL = 1e-5
EXHAUSTIVE_CORNER_DIM = 12


@dataclass
class OutputComparison:
    name: str
    max_abs_error: float
    max_rel_error: float
    mismatches: int
    points: int


@dataclass
class VerificationResult:
    """Outcome of :func:`verify_models`; ``passed`` is the overall verdict."""

    passed: bool
    points: int
    random_points: int
    corner_points: int
    extra_points: int
    rtol: float
    atol: float
    outputs: list[OutputComparison] = field(default_factory=list)
    worst_point: list | None = None

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((o.max_rel_error for o in self.outputs), default=0.0)

    def to_json(self) -> dict:
        out = asdict(self)
        out["max_abs_error"] = self.max_abs_error
        out["max_rel_error"] = self.max_rel_error
        return out


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        name = model if isinstance(model, (str, Path)) else "model"
        raise ModelError(f"{name}: onnxruntime cannot load it: {str(exc).strip().splitlines()[0]}") from None


def corner_points(box: Box, count: int, rng: np.random.Generator) -> np.ndarray:
    n = box.size
    if n <= EXHAUSTIVE_CORNER_DIM:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    else:
        bits = rng.integers(0, 2, size=(count, n))
    return np.where(bits.astype(bool), box.upper, box.lower)


def stored_witnesses_path(model_path: str | Path) -> Path:
    """Where ``compress`` stores the witnesses of a compressed model: ``small.onnx`` -> ``small.witnesses.npy``."""
    return Path(model_path).with_suffix(".witnesses.npy")


def verification_points(box: Box, random_points: int = 1000, corners: int = 256, extra=None, seed: int = 0):
    """Random points, corners, and the ``extra`` points that lie in the box (the models need
    only agree on the box, so points outside it are dropped)."""
    rng = np.random.default_rng(seed)
    parts = [box.sample(random_points, rng), corner_points(box, corners, rng)]
    extra = np.empty((0, box.size)) if extra is None else np.asarray(extra, float).reshape(-1, box.size)
    extra = extra[box.contains(extra)]
    parts.append(extra)
    return np.vstack(parts), len(parts[0]), len(parts[1]), len(extra)


def _fixed_batch(session) -> int | None:
    """The model's fixed batch size, or None when its batch axis is symbolic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else None


def _run(session, input_name: str, shape, dtype, X: np.ndarray):
    try:
        return _run_batches(session, input_name, shape, dtype, X, _fixed_batch(session))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime failed to run a model: {str(exc).strip().splitlines()[0]}") from None


def _run_batches(session, input_name: str, shape, dtype, X: np.ndarray, batch_fixed: int | None):
    """Run ``X`` in one batch, or for a model with a fixed batch size ``k`` in chunks of ``k`` rows,
    the last one padded with copies of its first row; the padding rows' outputs are dropped."""
    feed = X.astype(dtype).reshape(len(X), *shape)
    if batch_fixed is None or batch_fixed == len(X):
        return session.run(None, {input_name: feed})
    chunks = []
    for i in range(0, len(X), batch_fixed):
        chunk = feed[i:i + batch_fixed]
        pad = batch_fixed - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
        chunks.append([out[:batch_fixed - pad] for out in session.run(None, {input_name: chunk})])
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]


def verify_models(original, compressed, box: Box, extra_points=None, random_points: int = 1000,
                  corners: int = 256, rtol: float = RTOL, atol: float = ATOL, seed: int = 0) -> VerificationResult:
    """Compare two ONNX models (paths or ModelProtos) on points of ``box``; see module docstring."""
    s_orig, s_comp = _session(original), _session(compressed)
    inp = s_orig.get_inputs()[0]
    comp_inp = s_comp.get_inputs()
    if len(comp_inp) != 1 or comp_inp[0].name != inp.name:
        raise ModelError(f"compressed model input {[i.name for i in comp_inp]} differs from original input '{inp.name}'")
    if comp_inp[0].type != inp.type or list(comp_inp[0].shape[1:]) != list(inp.shape[1:]):
        raise ModelError(f"compressed model input '{inp.name}' is {comp_inp[0].type} {comp_inp[0].shape}, "
                         f"original is {inp.type} {inp.shape}")
    out_names = [o.name for o in s_orig.get_outputs()]
    if [o.name for o in s_comp.get_outputs()] != out_names:
        raise ModelError(f"compressed model outputs {[o.name for o in s_comp.get_outputs()]} differ from {out_names}")
    shape = [d for d in inp.shape[1:]]
    if not all(isinstance(d, int) for d in shape) or int(np.prod(shape)) != box.size:
        raise ModelError(f"model input '{inp.name}' has shape {inp.shape}, which does not match a domain of {box.size} entries")
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}.get(inp.type)
    if dtype is None:
        raise ModelError(f"model input '{inp.name}' has unsupported type {inp.type}")
    X, n_rand, n_corner, n_extra = verification_points(box, random_points, corners, extra_points, seed)
    ya = _run(s_orig, inp.name, shape, dtype, X)
    yb = _run(s_comp, inp.name, shape, dtype, X)
    result = VerificationResult(True, len(X), n_rand, n_corner, n_extra, rtol, atol)
    excess = np.full(len(X), -np.inf)  # per point, the largest amount by which an output misses its tolerance
    for name, a, b in zip(out_names, ya, yb):
        comparison, point_excess = _compare(name, np.asarray(a), np.asarray(b), len(X), rtol, atol)
        result.outputs.append(comparison)
        result.passed &= comparison.mismatches == 0
        excess = np.maximum(excess, point_excess)
    if not result.passed:
        result.worst_point = X[int(np.argmax(excess))].tolist()
    return result


def _compare(name: str, a: np.ndarray, b: np.ndarray, points: int, rtol: float, atol: float):
    """Compare one output over ``points`` samples; returns the summary and each point's excess over
    the tolerance (positive where the point mismatches). Non-float outputs must be equal: their
    "errors" are 1 when any point differs."""
    if a.shape != b.shape:
        return OutputComparison(name, float("inf"), float("inf"), points, points), np.full(points, np.inf)
    if a.dtype.kind != "f":
        bad = (a != b).reshape(points, -1).any(axis=1)
        flag = float(bad.any())
        return OutputComparison(name, flag, flag, int(bad.sum()), points), np.where(bad, 1.0, -1.0)
    a64, b64 = a.astype(np.float64).reshape(points, -1), b.astype(np.float64).reshape(points, -1)
    err = np.where(np.isnan(a64) & np.isnan(b64), 0.0, np.nan_to_num(np.abs(a64 - b64), nan=np.inf))
    scale = max(1.0, float(np.max(np.abs(a64), initial=0.0)))
    limit = atol * scale + rtol * np.abs(a64)
    point_excess = (err - limit).max(axis=1, initial=-np.inf)
    rel = float(np.max(err / np.maximum(np.abs(a64), 1e-12 * scale), initial=0.0))
    return OutputComparison(name, float(err.max(initial=0.0)), rel, int((point_excess > 0).sum()), points), point_excess
