"""Domains made of several boxes, where the compressed model must be exact on their union.

A :class:`Domain` is one or more :class:`~exactcomp.domain.Box` parts read from box JSON files (``{"lower",
"upper"}``, or ``{"parts": [{"lower", "upper"}, ...]}`` as ``exactcomp domain`` writes for several balls) and
VNN-LIB files (:mod:`exactcomp.domains.vnnlib`), with the files' SHA-256 for the report.

The union rule (:func:`merge_analyses`), from one analysis per part: a neuron is stably active (inactive) on
the union only if it is stably active (inactive) on every part; unstable if it is unstable on some part, or
stably active on one part and stably inactive on another (the two parts' centres are its witnesses, checked by
a float64 forward pass); unknown otherwise (kept). Bounds are the hull of the parts' bounds. The hull box is
never analysed or sampled as such: it may hold inputs of no part, where the model need not be exact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exactcomp.domain import Box, load_box, make_box
from exactcomp.errors import DomainError


@dataclass(frozen=True)
class Domain:
    """Boxes (``parts``) whose union is the domain; ``sources``: the files read; ``sha256``: their hash."""

    parts: tuple
    sources: tuple = ()
    sha256: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "parts", tuple(self.parts))
        if not self.parts:
            raise DomainError("a domain needs at least one box")
        if len({p.size for p in self.parts}) != 1:
            raise DomainError("the boxes of a domain differ in size")

    @property
    def size(self) -> int:
        return self.parts[0].size

    @property
    def hull(self) -> Box:
        """The smallest box holding every part (for what needs one box: fixed inputs, input scaling)."""
        return Box(np.min([p.lower for p in self.parts], axis=0), np.max([p.upper for p in self.parts], axis=0))

    def contains(self, points: np.ndarray) -> np.ndarray:
        return np.any([p.contains(points) for p in self.parts], axis=0)

    def describe(self) -> dict:
        """What reports record: sources, hash, dimensions, boxes, fixed inputs (fixed on every box)."""
        return {"sources": [str(s) for s in self.sources], "sha256": self.sha256, "dimensions": self.size,
                "boxes": len(self.parts), "fixed_inputs": int(self.hull.fixed.sum())}


def _file_hash(paths) -> str | None:
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(Path(path).read_bytes())
        except OSError:
            return None
    return digest.hexdigest()


def _json_parts(path: Path, input_shape) -> list[Box]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError, UnicodeDecodeError):
        return [load_box(path, input_shape)]   # its one-line error
    if isinstance(data, dict) and "parts" in data:
        parts = data["parts"]
        if not isinstance(parts, list) or not parts:
            raise DomainError(f"{path}: field 'parts' must be a non-empty list of boxes")
        out = []
        for i, part in enumerate(parts):
            if not isinstance(part, dict) or "lower" not in part or "upper" not in part:
                raise DomainError(f"{path}: parts[{i}] must be an object with fields 'lower' and 'upper'")
            out.append(make_box(part["lower"], part["upper"], input_shape, source=f"{path}: parts[{i}]"))
        return out
    return [load_box(path, input_shape)]


def is_vnnlib(path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".vnnlib") or name.endswith(".vnnlib.gz")


def load_domain(paths, input_shape) -> Domain:
    """The :class:`Domain` of one or more files (box JSON or VNN-LIB) for an input of per-sample ``input_shape``."""
    from exactcomp.domains.vnnlib import read_vnnlib_boxes

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise DomainError("no domain given")
    size = int(np.prod(input_shape, dtype=np.int64))
    parts = []
    for path in map(Path, paths):
        if is_vnnlib(path):
            parts += [make_box(lo, hi, input_shape, source=str(path)) for lo, hi in read_vnnlib_boxes(path, size)]
        else:
            parts += _json_parts(path, input_shape)
    return Domain(tuple(parts), tuple(str(p) for p in paths), _file_hash(paths))


def as_domain(value) -> Domain:
    """A :class:`Domain` from a Domain, a Box or a list of Boxes."""
    if isinstance(value, Domain):
        return value
    if isinstance(value, Box):
        return Domain((value,))
    return Domain(tuple(value))
