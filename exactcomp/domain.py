"""Input domains: an axis-aligned box ``lower <= x <= upper`` over the model's input.

File format (``box.json``)::

    {"lower": 0.0, "upper": 1.0}                  # a number applies to every input entry
    {"lower": [[...]], "upper": [[...]]}          # arrays in the input's per-sample shape,
                                                  # with or without a leading batch axis of 1,
                                                  # or flattened to the input's length

Every entry must be a JSON number (not a string, boolean or null), finite as a float64, and
``lower <= upper`` entrywise; ``lower == upper`` (a fixed input) is allowed. :class:`Box` applies the
same rules to arrays given in Python (real numeric dtypes only), so every invalid domain raises
:class:`~exactcomp.errors.DomainError`, never a numpy or Python error. A box file is read once (it may be
a pipe such as ``/dev/stdin``), and an ONNX model, a NumPy array or other binary data given as one is refused
with a one-line error (:mod:`exactcomp.domains.source`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exactcomp.errors import DomainError, ExactcompError

#: Most random points one analysis (witness search) or verification draws from a domain: ``--random-points``
#: and ``random_points``. Points are drawn and run in batches of 4096, so more costs time, not memory: on the
#: 784-100-100 MNIST MLP (two CPU cores) 1 million took 8 s in ``verify`` and 24 s in compress's witness
#: search, so 10 million take minutes there and far longer on convolutional models, well past the point where
#: more random points find more witnesses or mismatches; 1e12 would run for months.
MAX_RANDOM_POINTS = 10_000_000


def check_random_points(value, name: str = "random_points") -> int:
    """``value`` if it is an integer from 0 to :data:`MAX_RANDOM_POINTS`, else an ExactcompError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= MAX_RANDOM_POINTS:
        raise ExactcompError(f"{name} must be an integer from 0 to {MAX_RANDOM_POINTS:,}, got {value!r}")
    return int(value)


def _as_float_array(value, what: str) -> np.ndarray:
    """``value`` (a number, a nested list of numbers, or a real numeric array) as float64.

    Booleans, strings, None, complex numbers, objects and ragged lists are refused with a
    DomainError naming ``what``; so are values that overflow float64 (e.g. a 400-digit integer).
    """
    kind = "a number or a (nested) list of numbers"
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise DomainError(f"{what} must be numeric, got an array of dtype {value.dtype}")
        arr = value
    else:
        _check_json_numbers(value, what, kind)
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise DomainError(f"{what} must be {kind} with a regular shape") from None
    with np.errstate(over="ignore", invalid="ignore"):
        return np.array(arr, dtype=np.float64)


def _check_json_numbers(value, what: str, kind: str) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            if item.dtype.kind not in "iuf":
                raise DomainError(f"{what} must be numeric, got an array of dtype {item.dtype}")
        elif isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Real):
            raise DomainError(f"{what} must be {kind}; found {type(item).__name__} {_short(item)}")
        else:
            try:
                float(item)
            except OverflowError:
                raise DomainError(f"{what} has a number too large for float64: {_short(item)}") from None


def _short(item) -> str:
    text = repr(item)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_box(lower: np.ndarray, upper: np.ndarray, source: str) -> None:
    if lower.shape != upper.shape:
        raise DomainError(f"{source}: lower has {lower.size} entries, upper has {upper.size}")
    for name, arr in (("lower", lower), ("upper", upper)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DomainError(f"{source}: field '{name}' has a non-finite entry at flat index {int(np.argmax(bad))}")
    inverted = lower > upper
    if inverted.any():
        i = int(np.argmax(inverted))
        raise DomainError(f"{source}: lower exceeds upper at flat index {i} ({lower[i]} > {upper[i]})")


@dataclass(frozen=True, eq=False)
class Box:
    """A box over the flattened input: ``lower[i] <= x[i] <= upper[i]``.

    ``lower`` and ``upper`` are numbers or real arrays of equal size, finite, ``lower <= upper``
    (checked: a DomainError otherwise). They are stored flattened as read-only float64 arrays.
    """

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self):
        lo = _as_float_array(self.lower, "domain: lower").ravel()
        hi = _as_float_array(self.upper, "domain: upper").ravel()
        if lo.size == 1 and hi.size > 1:
            lo = np.full(hi.size, lo[0])
        if hi.size == 1 and lo.size > 1:
            hi = np.full(lo.size, hi[0])
        if lo.size == 0:
            raise DomainError("domain: lower and upper are empty")
        _check_box(lo, hi, "domain")
        for name, arr in (("lower", lo), ("upper", hi)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def size(self) -> int:
        return self.lower.size

    @property
    def fixed(self) -> np.ndarray:
        """Mask of the coordinates with ``lower == upper`` (inputs that are constant on the box)."""
        return self.lower == self.upper

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows of ``points`` (batch, size) that lie inside the box."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, self.size)
        return np.all((points >= self.lower) & (points <= self.upper), axis=1)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` points drawn uniformly from the box."""
        return rng.uniform(self.lower, self.upper, size=(count, self.size))

    def clip(self, points: np.ndarray) -> np.ndarray:
        return np.clip(points, self.lower, self.upper)


def _field_array(value, field: str, shape: tuple[int, ...], source: str) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.int64))
    arr = _as_float_array(value, f"{source}: field '{field}'")
    if arr.ndim == 0:
        arr = np.full(size, float(arr))
    elif arr.shape in (tuple(shape), (1, *shape), (size,)):
        arr = arr.ravel()
    else:
        raise DomainError(
            f"{source}: field '{field}' has shape {list(arr.shape)}, expected a number, "
            f"shape {list(shape)} or length {size}"
        )
    return arr


def make_box(lower, upper, input_shape: tuple[int, ...], source: str = "domain") -> Box:
    """Validate ``lower``/``upper`` against the per-sample ``input_shape`` and build a :class:`Box`."""
    lo = _field_array(lower, "lower", input_shape, source)
    hi = _field_array(upper, "upper", input_shape, source)
    _check_box(lo, hi, source)
    return Box(lo, hi)


def load_box(path: str | Path, input_shape: tuple[int, ...]) -> Box:
    """Read a box file (see module docstring) for an input of per-sample shape ``input_shape``.

    The file is read once (it may be a pipe, e.g. ``/dev/stdin``); an ONNX model, a NumPy array or other
    binary data is refused with a one-line DomainError (:mod:`exactcomp.domains.source`)."""
    from exactcomp.domains.source import json_document, read_source

    source = read_source(path, "box file")
    return box_from_json(json_document(source), input_shape, str(source.path))


def box_from_json(data, input_shape: tuple[int, ...], source: str) -> Box:
    """The :class:`Box` of a parsed box file ``data`` (a JSON object with fields 'lower' and 'upper')."""
    if not isinstance(data, dict):
        raise DomainError(f"{source}: expected a JSON object with fields 'lower' and 'upper'")
    for field in ("lower", "upper"):
        if field not in data:
            raise DomainError(f"{source}: missing field '{field}'")
    return make_box(data["lower"], data["upper"], input_shape, source=source)


def read_npy(path: str | Path) -> np.ndarray:
    """The array of an ``.npy`` file (no pickles); a missing, unreadable or ``.npz`` file is a one-line
    :class:`DomainError` naming it."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DomainError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DomainError(f"{path}: is a directory, not a .npy file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DomainError(f"{path}: not a readable .npy array: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if not isinstance(arr, np.ndarray):   # an .npz archive
        raise DomainError(f"{path}: expected a .npy array, got an archive of several arrays")
    return arr


def load_samples(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """Read user samples (``.npy``), shape (count, *input_shape) or (count, size), as float64 rows
    (checked as :func:`as_samples` says)."""
    path = Path(path)
    return as_samples(read_npy(path), input_shape, str(path))


def as_samples(arr, input_shape: tuple[int, ...], name: str = "samples") -> np.ndarray:
    """``arr`` as float64 rows of the input's size; shape (count, *input_shape) or (count, size).

    Only real numeric arrays (integer or float dtypes) are accepted: complex, boolean, string and
    object arrays are refused rather than silently converted; so are NaN and infinite values. ``name``
    (a file, or what the array is) starts the one-line :class:`DomainError`.
    """
    arr = np.asarray(arr)
    size = int(np.prod(input_shape, dtype=np.int64))
    if arr.dtype.kind not in "iuf":
        raise DomainError(f"{name}: samples must be real numbers (integer or float), got dtype {arr.dtype}")
    if arr.ndim < 1 or arr.size % size or (arr.ndim > 1 and arr.shape[1:] not in (tuple(input_shape), (size,))):
        raise DomainError(f"{name}: samples have shape {list(arr.shape)}, expected (count, {', '.join(map(str, input_shape))})")
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float64).reshape(-1, size)
    if not np.isfinite(arr).all():
        raise DomainError(f"{name}: samples contain NaN or infinite values")
    return arr
