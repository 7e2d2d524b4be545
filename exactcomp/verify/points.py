"""The points two models are compared on: random points and corners of each box, and extra points
(witnesses) inside the domain. For a union of boxes (:class:`~exactcomp.domains.union.Domain`) every box
gets its share, and the hull of the boxes is never sampled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exactcomp.domain import Box

#: Up to this many input entries, every corner of the box is a verification point.
EXHAUSTIVE_CORNER_DIM = 12
#: Rows per onnxruntime batch (and per chunk of generated points).
CHUNK = 4096


def corner_points(box: Box, count: int, rng: np.random.Generator) -> np.ndarray:
    n = box.size
    if n <= EXHAUSTIVE_CORNER_DIM:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    else:
        bits = rng.integers(0, 2, size=(count, n))
    return np.where(bits.astype(bool), box.upper, box.lower)


@dataclass
class _Points:
    """The verification points, produced in chunks: random, corners, extra (inside the box)."""

    box: Box
    random: int
    corners: np.ndarray
    extra: np.ndarray
    seed: int

    def chunks(self):
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.random, CHUNK):
            yield self.box.sample(min(CHUNK, self.random - start), rng)
        for part in (self.corners, self.extra):
            for start in range(0, len(part), CHUNK):
                yield part[start:start + CHUNK]

    @property
    def total(self) -> int:
        return self.random + len(self.corners) + len(self.extra)


@dataclass
class _UnionPoints:
    """The verification points of each box of a union (:class:`~exactcomp.domains.union.Domain`), one after
    the other: never points of the hull outside every box."""

    parts: list

    def chunks(self):
        for part in self.parts:
            yield from part.chunks()

    random = property(lambda self: sum(p.random for p in self.parts))
    corners = property(lambda self: np.vstack([p.corners for p in self.parts]))
    extra = property(lambda self: np.vstack([p.extra for p in self.parts]))
    total = property(lambda self: sum(p.total for p in self.parts))


def domain_points(domain, random_points: int = 1000, corners: int = 256, extra=None, seed: int = 0):
    """:func:`verification_points` of a union of boxes: the budget split over the boxes (at least 64
    random points and 16 corners each), every extra point inside some box checked once."""
    from exactcomp.domains.union import as_domain

    domain = as_domain(domain)
    if len(domain.parts) == 1:
        return verification_points(domain.parts[0], random_points, corners, extra, seed)
    n = len(domain.parts)
    extra = np.empty((0, domain.size)) if extra is None else np.asarray(extra, float).reshape(-1, domain.size)
    first = np.argmax([p.contains(extra) for p in domain.parts], axis=0) if len(extra) else np.zeros(0, int)
    inside = domain.contains(extra) if len(extra) else np.zeros(0, bool)
    return _UnionPoints([verification_points(part, max(64, random_points // n), max(16, corners // n),
                                             extra[inside & (first == i)], seed + 7 * i)
                         for i, part in enumerate(domain.parts)])


def verification_points(box: Box, random_points: int = 1000, corners: int = 256, extra=None, seed: int = 0) -> _Points:
    rng = np.random.default_rng(seed + 1)
    extra = np.empty((0, box.size)) if extra is None else np.asarray(extra, float).reshape(-1, box.size)
    return _Points(box, int(random_points), corner_points(box, corners, rng), extra[box.contains(extra)], seed)
