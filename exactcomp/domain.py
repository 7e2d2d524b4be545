"""Input domains: an axis-aligned box ``lower <= x <= upper`` over the model's input.

File format (``box.json``)::

    {"lower": 0.0, "upper": 1.0}                  # a number applies to every input entry
    {"lower": [[...]], "upper": [[...]]}          # arrays in the input's per-sample shape,
                                                  # with or without a leading batch axis of 1,
                                                  # or flattened to the input's length

Bounds must be finite and ``lower <= upper`` entrywise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DomainError


@dataclass(frozen=True, eq=False)
class Box:
    """A box over the flattened input: ``lower[i] <= x[i] <= upper[i]``."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self):
        for name in ("lower", "upper"):
            arr = np.array(getattr(self, name), dtype=np.float64).ravel()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if self.lower.shape != self.upper.shape:
            raise DomainError(f"domain: lower has {self.lower.size} entries, upper has {self.upper.size}")

    @property
    def size(self) -> int:
        return self.lower.size

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
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DomainError(f"{source}: field '{field}' must be a number or a (nested) list of numbers") from None
    if arr.ndim == 0:
        arr = np.full(size, float(arr))
    elif arr.shape in (tuple(shape), (1, *shape), (size,)):
        arr = arr.ravel()
    else:
        raise DomainError(
            f"{source}: field '{field}' has shape {list(arr.shape)}, expected a number, "
            f"shape {list(shape)} or length {size}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DomainError(f"{source}: field '{field}' has a non-finite entry at flat index {int(np.argmax(bad))}")
    return arr


def make_box(lower, upper, input_shape: tuple[int, ...], source: str = "domain") -> Box:
    """Validate ``lower``/``upper`` against the per-sample ``input_shape`` and build a :class:`Box`."""
    lo = _field_array(lower, "lower", input_shape, source)
    hi = _field_array(upper, "upper", input_shape, source)
    inverted = lo > hi
    if inverted.any():
        i = int(np.argmax(inverted))
        raise DomainError(f"{source}: lower exceeds upper at flat index {i} ({lo[i]} > {hi[i]})")
    return Box(lo, hi)


def load_box(path: str | Path, input_shape: tuple[int, ...]) -> Box:
    """Read a box file (see module docstring) for an input of per-sample shape ``input_shape``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DomainError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DomainError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DomainError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise DomainError(f"{path}: expected a JSON object with fields 'lower' and 'upper'")
    for field in ("lower", "upper"):
        if field not in data:
            raise DomainError(f"{path}: missing field '{field}'")
    return make_box(data["lower"], data["upper"], input_shape, source=str(path))


def load_samples(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """Read user samples (``.npy``), shape (count, *input_shape) or (count, size), as float64 rows."""
    path = Path(path)
    size = int(np.prod(input_shape, dtype=np.int64))
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DomainError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise DomainError(f"{path}: not a readable .npy array: {exc}") from None
    if arr.ndim < 1 or arr.size % size or (arr.ndim > 1 and arr.shape[1:] not in (tuple(input_shape), (size,))):
        raise DomainError(f"{path}: samples have shape {list(arr.shape)}, expected (count, {', '.join(map(str, input_shape))})")
    try:
        arr = arr.astype(np.float64).reshape(-1, size)
    except (TypeError, ValueError):
        raise DomainError(f"{path}: samples must be numeric") from None
    if not np.isfinite(arr).all():
        raise DomainError(f"{path}: samples contain NaN or infinite values")
    return arr
