"""Check a compressed model against its original with onnxruntime.

Both models run on the same points: uniform random points of the box, box corners (all of them
when the input has at most 12 entries, otherwise random corners), and any witnesses/extra points
supplied (points outside the box are dropped: the models need only agree on the box). Points are
generated and evaluated in batches of :data:`exactcomp.verify.points.CHUNK`, so any number of random points runs in bounded
memory; a model with a fixed batch size ``k`` runs them ``k`` at a time (the last chunk padded, the
padding's outputs dropped). Every floating-point output must satisfy, elementwise,

    |compressed - original| <= atol * max(1, max|original|) + rtol * |original|

with ``(atol, rtol)`` from :data:`TOLERANCES` by the model's compute type (the float type of its
arithmetic): differently folded but mathematically equal weights differ by a few units in the last
place of that type, far below the tolerance; a changed function exceeds it. A NaN or infinity in
the compressed model's output where the original is finite is a mismatch. Non-float outputs (labels)
must be equal. If the *original* model's output is not finite somewhere on the domain (its float
type overflows there), the models cannot be compared: that is a :class:`DomainError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from exactcomp.domain import Box, check_random_points
from exactcomp.errors import DomainError, ExactcompError, ModelError
from exactcomp.verify.points import corner_points, domain_points, verification_points  # noqa: F401 (public names)

#: Default ``(atol, rtol)`` per compute type: about 80 and 800 units in the last place (eps) for
#: float32, the same multiples of eps for float64; for float16 (eps 9.8e-4, 11-bit mantissa) 8 and
#: 16 eps, since its rounding of each folded weight is already 1/2 eps.
TOLERANCES = {"float64": (2e-14, 2e-13), "float32": (1e-5, 1e-4), "float16": (8e-3, 1.6e-2)}
#: Backwards-compatible names of the float32 defaults.
ATOL, RTOL = TOLERANCES["float32"]
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


def default_tolerance(dtype: str) -> tuple[float, float]:
    """``(atol, rtol)`` for a model computing in ``dtype`` (see :data:`TOLERANCES`)."""
    return TOLERANCES.get(str(dtype), TOLERANCES["float32"])


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
    dtype: str | None = None

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((o.max_rel_error for o in self.outputs), default=0.0)

    def to_json(self) -> dict:
        """As a dict for JSON; non-finite errors (a NaN or infinite output) become None."""
        from exactcomp.io.files import json_safe

        out = asdict(self)
        out["max_abs_error"] = self.max_abs_error
        out["max_rel_error"] = self.max_rel_error
        return json_safe(out)


def _session(model, provider: str = "cpu"):
    import onnxruntime as ort

    from exactcomp.verify.providers import check_provider, check_session

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    try:
        session = ort.InferenceSession(source, options, providers=[check_provider(provider)])
    except ExactcompError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        name = model if isinstance(model, (str, Path)) else "model"
        raise ModelError(f"{name}: onnxruntime cannot load it: {str(exc).strip().splitlines()[0]}") from None
    check_session(session, provider)
    return session


def _run(session, input_name: str, shape, dtype, X: np.ndarray, batch_fixed: int | None):
    try:
        return _run_batches(session, input_name, shape, dtype, X, batch_fixed)
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


@dataclass
class _Model:
    """An onnxruntime session with what is needed to feed it."""

    session: object
    input_name: str
    shape: list
    dtype: type
    batch_fixed: int | None
    output_names: list

    @classmethod
    def open(cls, model, provider: str = "cpu") -> "_Model":
        s = _session(model, provider)
        inp = s.get_inputs()[0]
        shape = list(inp.shape[1:])
        dtype = _ORT_TYPES.get(inp.type)
        if dtype is None:
            raise ModelError(f"model input '{inp.name}' has unsupported type {inp.type}")
        batch = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
        return cls(s, inp.name, shape, dtype, batch, [o.name for o in s.get_outputs()])

    def check_domain(self, box: Box) -> None:
        if not all(isinstance(d, int) for d in self.shape) or int(np.prod(self.shape)) != box.size:
            raise ModelError(f"model input '{self.input_name}' has shape {['N', *self.shape]}, which does not match "
                             f"a domain of {box.size} entries")

    def run(self, X: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(y) for y in _run(self.session, self.input_name, self.shape, self.dtype, X, self.batch_fixed)]


def _check_compatible(a: _Model, b: _Model) -> None:
    ia, ib = a.session.get_inputs(), b.session.get_inputs()
    if len(ib) != 1 or ib[0].name != ia[0].name:
        raise ModelError(f"compressed model input {[i.name for i in ib]} differs from original input '{ia[0].name}'")
    if ib[0].type != ia[0].type or list(ib[0].shape[1:]) != list(ia[0].shape[1:]):
        raise ModelError(f"compressed model input '{ia[0].name}' is {ib[0].type} {ib[0].shape}, "
                         f"original is {ia[0].type} {ia[0].shape}")
    if b.output_names != a.output_names:
        raise ModelError(f"compressed model outputs {b.output_names} differ from {a.output_names}")


def check_domain_representable(box: Box, dtype: str, what: str = "domain") -> None:
    """Refuse a box whose entries overflow the model's input float type (e.g. 1e300 in float32)."""
    limit = float(np.finfo(np.dtype(dtype)).max)
    too_big = np.maximum(np.abs(box.lower), np.abs(box.upper)) > limit
    if too_big.any():
        i = int(np.argmax(too_big))
        raise DomainError(f"{what}: entry {i} ([{box.lower[i]:g}, {box.upper[i]:g}]) is outside the range of the model's "
                          f"{dtype} input (|x| <= {limit:g})")


def _nonfinite_error(name: str, bad: int, points: int) -> DomainError:
    return DomainError(f"domain: the original model's output '{name}' is not finite (NaN or infinite) at {bad} of "
                       f"{points} points of the domain: its float arithmetic overflows there, so no model can be "
                       "checked against it; use a smaller domain")


def check_domain_evaluable(model, box: Box, points: int = 64, seed: int = 0) -> None:
    """Run ``model`` on a few corners and random points of ``box``; a non-finite float output
    means its float type overflows on the domain (DomainError), found before any analysis."""
    m = _Model.open(model)
    m.check_domain(box)
    rng = np.random.default_rng(seed)
    X = np.vstack([box.sample(points, rng), corner_points(box, points, rng), (box.lower + box.upper)[None] / 2])
    for name, y in zip(m.output_names, m.run(X)):
        if y.dtype.kind == "f":
            bad = int((~np.isfinite(y.astype(np.float64).reshape(len(X), -1))).any(axis=1).sum())
            if bad:
                raise _nonfinite_error(name, bad, len(X))


def verify_models(original, compressed, box: Box, extra_points=None, random_points: int = 1000,
                  corners: int = 256, rtol: float | None = None, atol: float | None = None, seed: int = 0,
                  dtype: str | None = None, provider: str = "cpu") -> VerificationResult:
    """Compare two ONNX models (paths or ModelProtos) on points of ``box``; see module docstring.

    ``box`` may also be a :class:`~exactcomp.domains.union.Domain` (a union of boxes: points of each box).
    ``provider``: where onnxruntime runs both models, ``cpu`` or ``cuda`` (:mod:`exactcomp.verify.providers`).
    ``rtol``/``atol`` default to :func:`default_tolerance` of ``dtype`` (the compute type; default:
    the original model's input type).
    """
    from exactcomp.domains.union import as_domain

    random_points = check_random_points(random_points)
    a, b = _Model.open(original, provider), _Model.open(compressed, provider)
    _check_compatible(a, b)
    for part in as_domain(box).parts:
        a.check_domain(part)
        check_domain_representable(part, np.dtype(a.dtype).name)
    dtype = dtype or np.dtype(a.dtype).name
    default_atol, default_rtol = default_tolerance(dtype)
    atol = default_atol if atol is None else float(atol)
    rtol = default_rtol if rtol is None else float(rtol)
    if not (np.isfinite(atol) and np.isfinite(rtol) and atol >= 0 and rtol >= 0):
        raise ExactcompError(f"tolerances must be finite and >= 0, got rtol={rtol}, atol={atol}")
    points = domain_points(box, random_points, corners, extra_points, seed)
    stats = [_Accumulator(name) for name in a.output_names]
    worst, worst_excess, seen = None, -np.inf, 0
    for X in points.chunks():
        excess = np.full(len(X), -np.inf)
        for acc, ya, yb in zip(stats, a.run(X), b.run(X)):
            excess = np.maximum(excess, acc.add(ya, yb, len(X), rtol, atol))
        seen += len(X)
        if excess.max(initial=-np.inf) > max(worst_excess, 0.0):
            worst_excess, worst = float(excess.max()), X[int(np.argmax(excess))].tolist()
    for acc in stats:
        if acc.original_nonfinite:
            raise _nonfinite_error(acc.name, acc.original_nonfinite, seen)
    outputs = [acc.result(seen) for acc in stats]
    passed = all(o.mismatches == 0 for o in outputs)
    return VerificationResult(passed, seen, points.random, len(points.corners), len(points.extra), rtol, atol,
                              outputs, None if passed else worst, dtype)


class _Accumulator:
    """Running comparison of one output over chunks of points."""

    def __init__(self, name: str):
        self.name = name
        self.max_abs = self.max_rel = 0.0
        self.mismatches = self.original_nonfinite = 0
        # max(1, max |original|) over the points evaluated so far: the absolute term of the
        # tolerance is never looser than with the maximum over all points
        self.scale = 1.0

    def add(self, a: np.ndarray, b: np.ndarray, points: int, rtol: float, atol: float) -> np.ndarray:
        """Fold one chunk in; returns each point's excess over the tolerance (> 0: mismatch)."""
        if a.shape != b.shape:
            self.max_abs = self.max_rel = float("inf")
            self.mismatches += points
            return np.full(points, np.inf)
        if a.dtype.kind != "f":
            bad = (a != b).reshape(points, -1).any(axis=1)
            self.max_abs = self.max_rel = max(self.max_abs, float(bad.any()))
            self.mismatches += int(bad.sum())
            return np.where(bad, 1.0, -1.0)
        a64, b64 = a.astype(np.float64).reshape(points, -1), b.astype(np.float64).reshape(points, -1)
        finite = np.isfinite(a64)
        self.original_nonfinite += int((~finite).any(axis=1).sum())
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.where(finite, np.abs(a64 - b64), 0.0)
        err = np.where(finite & ~np.isfinite(b64), np.inf, err)          # NaN/inf only in the compressed model
        err = np.where(~finite & (a64 != b64) & ~(np.isnan(a64) & np.isnan(b64)), np.inf, err)
        self.scale = max(self.scale, float(np.max(np.abs(np.where(finite, a64, 0.0)), initial=0.0)))
        limit = atol * self.scale + rtol * np.abs(np.where(finite, a64, 0.0))
        point_excess = (err - limit).max(axis=1, initial=-np.inf)
        self.mismatches += int((point_excess > 0).sum())
        self.max_abs = max(self.max_abs, float(err.max(initial=0.0)))
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = err / np.maximum(np.abs(np.where(finite, a64, 0.0)), 1e-12 * self.scale)
        self.max_rel = max(self.max_rel, float(np.nanmax(rel, initial=0.0)))
        return point_excess

    def result(self, points: int) -> OutputComparison:
        return OutputComparison(self.name, self.max_abs, self.max_rel, self.mismatches, points)
