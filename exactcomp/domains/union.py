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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exactcomp.domain import Box, box_from_json, make_box
from exactcomp.domains.source import is_vnnlib_name, json_document, read_source
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


def _json_parts(data, source: str, input_shape) -> list[Box]:
    """The boxes of a parsed box JSON file: one box, or ``{"parts": [...]}``."""
    if isinstance(data, dict) and "parts" in data:
        parts = data["parts"]
        if not isinstance(parts, list) or not parts:
            raise DomainError(f"{source}: field 'parts' must be a non-empty list of boxes")
        out = []
        for i, part in enumerate(parts):
            if not isinstance(part, dict) or "lower" not in part or "upper" not in part:
                raise DomainError(f"{source}: parts[{i}] must be an object with fields 'lower' and 'upper'")
            out.append(make_box(part["lower"], part["upper"], input_shape, source=f"{source}: parts[{i}]"))
        return out
    return [box_from_json(data, input_shape, source)]


#: Whether a file name says VNN-LIB (``.vnnlib``, ``.vnnlib.gz``); files with other names are told by content.
is_vnnlib = is_vnnlib_name


def load_domain(paths, input_shape) -> Domain:
    """The :class:`Domain` of one or more files (box JSON or VNN-LIB) for an input of per-sample ``input_shape``
    (None: a flat input of the size the first file declares).

    Each file is read exactly once (:func:`~exactcomp.domains.source.read_source`: pipes such as
    ``/dev/stdin`` work; the format is told by the name or else the content), and parsed and hashed from
    those bytes: ``sha256`` is the SHA-256 of the files' bytes, one after the other."""
    from exactcomp.domains.vnnlib import vnnlib_boxes

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise DomainError("no domain given")
    digest = hashlib.sha256()
    parts = []
    for path in paths:
        source = read_source(path)
        digest.update(source.raw)
        name = str(source.path)
        if source.kind == "vnnlib":
            boxes = vnnlib_boxes(source.text, name, None if input_shape is None else _size(input_shape))
            if input_shape is None:
                input_shape = (boxes[0][0].size,)
            parts += [make_box(lo, hi, input_shape, source=name) for lo, hi in boxes]
        else:
            data = json_document(source)
            if input_shape is None:
                input_shape = (_declared_size(data),)
            parts += _json_parts(data, name, input_shape)
    return Domain(tuple(parts), tuple(str(p) for p in paths), digest.hexdigest())


def _size(input_shape) -> int:
    return int(np.prod(input_shape, dtype=np.int64))


def _declared_size(data) -> int:
    """The flat size a box JSON document declares: the larger of its (first part's) 'lower' and 'upper'
    (1 when both are numbers, or when they are not arrays of numbers: the box check then says why)."""
    first = data["parts"][0] if isinstance(data, dict) and isinstance(data.get("parts"), list) and data["parts"] else data
    sizes = [1]
    for field in ("lower", "upper"):
        try:
            sizes.append(int(np.asarray(first[field], dtype=float).size))
        except Exception:   # noqa: BLE001 - make_box reports the precise problem
            pass
    return max(sizes)


def as_domain(value) -> Domain:
    """A :class:`Domain` from a Domain, a Box or a list of Boxes."""
    if isinstance(value, Domain):
        return value
    if isinstance(value, Box):
        return Domain((value,))
    return Domain(tuple(value))
