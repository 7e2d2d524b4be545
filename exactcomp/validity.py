"""What an analysis is valid for, and the check that refuses to use it anywhere else.

A stability proof holds for one network over one domain: ``g_j(x) <= -τ`` for every ``x`` in the box ``B``
says nothing about a point outside ``B``, and nothing about another network. An :class:`Analysis` therefore
records (:class:`Validity`) the SHA-256 of its network's weights and structure (:func:`network_sha256`), the
boxes it was made over, and its margin τ. :meth:`Validity.check` accepts a network with the same hash and a
domain each of whose boxes lies inside one analysed box (a sub-box: every proof carries over, since the
claim "for every x in B" implies it for every x in a subset of B; unstable neurons are kept anyway), and
refuses anything else with one :class:`~exactcomp.errors.ExactcompError` line. Containment is checked box
by box against single analysed boxes (a box covered only by the union of several analysed boxes is refused:
conservative, never wrong).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

from exactcomp.errors import ExactcompError


class AnalysisMismatch(ExactcompError):
    """An analysis handed to ``compress`` (or a report to ``--resume``) that was made for another network,
    another domain or another margin."""


def network_sha256(network) -> str:
    """SHA-256 of everything that defines ``network``'s function: every layer's and skip's class and arrays
    (float64 bytes, shapes, dtypes), the input selection, input/output descriptions and the head; the
    free-form ``metadata`` is left out. The network is taken as :meth:`Network.with_full_input`, so a
    network and its full-input form hash alike."""
    digest = hashlib.sha256()
    feed_digest(digest, dataclasses.replace(network.with_full_input(), metadata={}))
    return digest.hexdigest()


def feed_digest(digest, value) -> None:
    """Hash ``value`` recursively and unambiguously (type tags, lengths), arrays by their bytes."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"A{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    elif _is_sparse(value):   # by its canonical CSR form: flags such as sorted indices change as it is used
        canonical = value.tocsr(copy=True)
        canonical.sum_duplicates()
        canonical.sort_indices()
        digest.update(f"S{canonical.shape}".encode())   # "S(" never begins a scalar tag
        for part in (canonical.indptr.astype(np.int64), canonical.indices.astype(np.int64), canonical.data):
            feed_digest(digest, np.asarray(part))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"D{type(value).__qualname__}(".encode())
        for f in dataclasses.fields(value):
            digest.update(f.name.encode() + b"=")
            feed_digest(digest, getattr(value, f.name))
        digest.update(b")")
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}[".encode())
        for item in value:
            feed_digest(digest, item)
        digest.update(b"]")
    elif isinstance(value, dict):
        feed_digest(digest, sorted(((str(k), v) for k, v in value.items()), key=lambda kv: kv[0]))
    elif isinstance(value, (bytes, bytearray)):
        digest.update(f"B{len(value)}:".encode() + bytes(value))
    elif isinstance(value, enum.Enum):
        digest.update(f"E{type(value).__qualname__}.{value.name}".encode())
    elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
        digest.update(f"S{type(value).__name__}:{value!r};".encode())
    else:   # an op that is no dataclass: its attributes, less the values its cached properties derive from them
        derived = {name for name in vars(value) if isinstance(getattr(type(value), name, None), functools.cached_property)}
        feed_digest(digest, {"__class__": type(value).__qualname__,
                       **{k: v for k, v in vars(value).items() if k not in derived}})


def _is_sparse(value) -> bool:
    import scipy.sparse as sp

    return sp.issparse(value)


@dataclass(frozen=True, eq=False)
class Validity:
    """The network (by :func:`network_sha256`), the boxes and the margin an analysis was made for."""

    network_sha256: str
    boxes: tuple          # of exactcomp.domain.Box
    margin: float

    @classmethod
    def of(cls, network, boxes, margin: float) -> "Validity":
        return cls(network_sha256(network), tuple(boxes), float(margin))

    def check(self, network, boxes, what: str = "the analysis") -> None:
        """Refuse (:class:`AnalysisMismatch`) ``network`` unless it hashes as the analysed one, and ``boxes``
        unless each lies inside one analysed box (see module doc)."""
        if network_sha256(network) != self.network_sha256:
            raise AnalysisMismatch(f"{what} was made for another network (its weights or structure differ); "
                                   "analyse this network first")
        for i, box in enumerate(boxes):
            if box.size != self.boxes[0].size or not any(_inside(box, a) for a in self.boxes):
                which = f"box {i + 1} of {len(boxes)} of the domain" if len(boxes) > 1 else "the domain"
                raise AnalysisMismatch(f"{what} was made over another domain: {which} {_outside(box, self.boxes)}; "
                                       "its proofs hold only inside the analysed box(es): analyse this domain")

    def to_json(self) -> dict:
        """For reports (``--resume``): the hash, the margin and each box's bounds, exactly (little-endian
        float64 bytes, zlib-compressed, base64: a few hundred bytes for an image box)."""
        return {"network_sha256": self.network_sha256, "margin": self.margin, "encoding": _ENCODING,
                "boxes": [{"lower": _pack(b.lower), "upper": _pack(b.upper)} for b in self.boxes]}

    @classmethod
    def from_json(cls, data) -> "Validity":
        """Inverse of :meth:`to_json`; a malformed entry raises ValueError / KeyError / TypeError."""
        from exactcomp.domain import Box

        if data.get("encoding") != _ENCODING:
            raise ValueError(f"unknown encoding {data.get('encoding')!r}")
        boxes = tuple(Box(_unpack(b["lower"]), _unpack(b["upper"])) for b in data["boxes"])
        return cls(str(data["network_sha256"]), boxes, float(data["margin"]))


_ENCODING = "float64-le/zlib/base64"


def _pack(values: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.asarray(values, "<f8").tobytes(), 9)).decode("ascii")


def _unpack(text: str) -> np.ndarray:
    try:
        return np.frombuffer(zlib.decompress(base64.b64decode(text, validate=True)), "<f8").astype(np.float64)
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(str(exc)) from None


def _inside(box, analysed) -> bool:
    return bool(np.all(analysed.lower <= box.lower) and np.all(box.upper <= analysed.upper))


def _outside(box, analysed) -> str:
    """Where ``box`` leaves the analysed box nearest to holding it (fewest entries outside)."""
    if box.size != analysed[0].size:
        return f"has {box.size} entries, the analysed one {analysed[0].size}"
    outside = [(box.lower < a.lower) | (box.upper > a.upper) for a in analysed]
    best = min(range(len(analysed)), key=lambda i: int(outside[i].sum()))
    where = np.flatnonzero(outside[best])
    first = int(where[0])
    a = analysed[best]
    return (f"leaves the analysed box at {where.size} input entr{'y' if where.size == 1 else 'ies'} (first: flat "
            f"index {first}, [{box.lower[first]:g}, {box.upper[first]:g}] not within [{a.lower[first]:g}, "
            f"{a.upper[first]:g}])")
