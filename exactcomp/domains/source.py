"""Reading one domain file: its bytes exactly once, then the format from those bytes.

A domain may come from a pipe (``--domain /dev/stdin``, bash's ``--domain <(cat box.json)``, which passes
``/dev/fd/N``), and a pipe can be read only once: :func:`read_source` reads each file's bytes once, and the
parser and the SHA-256 of the report both use those bytes. A pipe read again in the same process (one
``--domain`` for several models) gives the same bytes again.

What the bytes are is decided from the bytes themselves, before any parsing:

* gzip data (``prop.vnnlib.gz``, or ``<(gzip -c prop.vnnlib)``) is decompressed first;
* an ONNX model, a NumPy ``.npy`` array or ``.npz`` archive, or other binary data is a one-line
  :class:`~exactcomp.errors.DomainError` (``FILE: not a domain file (looks like ONNX)``), found from the
  first :data:`SNIFF_BYTES` bytes, so a large model given by mistake is not read in full;
* text is box JSON or VNN-LIB: by the name (``.json``; ``.vnnlib``, ``.vnnlib.gz``) or, when the name does
  not tell (a pipe, ``box.txt``), by the first character: ``{`` JSON, ``(`` or ``;`` VNN-LIB, anything else
  is read as JSON (and its error says where the JSON is wrong).
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path

from exactcomp.errors import DomainError

#: Bytes read before the rest of a file, to refuse a binary file (e.g. an ONNX model) without reading it all.
SNIFF_BYTES = 1 << 16
_GZIP, _NUMPY, _ZIP = b"\x1f\x8b", b"\x93NUMPY", b"PK\x03\x04"
#: Pipes and sockets already read in this process: (st_dev, st_ino) -> their bytes.
_PIPES: dict[tuple[int, int], bytes] = {}


@dataclass(frozen=True)
class DomainSource:
    """One domain file read: ``raw``, the bytes as read (hashed for the report); ``text``, their decoded
    (and, for gzip data, decompressed) text; ``kind``, ``"json"`` or ``"vnnlib"``."""

    path: Path
    raw: bytes
    text: str
    kind: str


def is_vnnlib_name(path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".vnnlib") or name.endswith(".vnnlib.gz")


def read_source(path: str | Path, what: str | None = None) -> DomainSource:
    """Read the domain file ``path`` once and tell its format (see module docstring); ``what`` names the
    expected kind of file in the error for a directory (default: by the name)."""
    path = Path(path)
    what = what or ("VNN-LIB file" if is_vnnlib_name(path) else "box file")
    raw = _read_bytes(path, what)
    data = _gunzip(path, raw) if raw.startswith(_GZIP) else raw
    if data is not raw:
        _refuse_binary(path, data)
    text = _decode(path, data)
    if not text.strip():
        raise DomainError(f"{path}: empty file, not a domain (expected box JSON or VNN-LIB)")
    name = path.name.lower()
    if is_vnnlib_name(path):
        kind = "vnnlib"
    elif name.endswith(".json") or name.endswith(".json.gz"):
        kind = "json"
    else:
        kind = "vnnlib" if text.lstrip()[:1] in ("(", ";") else "json"
    return DomainSource(path, raw, text, kind)


def json_document(source: DomainSource):
    """The JSON value of ``source``'s text; a one-line DomainError naming the file if it is not JSON."""
    try:
        return json.loads(source.text)
    except json.JSONDecodeError as exc:
        raise DomainError(f"{source.path}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:   # e.g. integers with too many digits, absurd nesting
        raise DomainError(f"{source.path}: invalid JSON: {str(exc).splitlines()[0][:120]}") from None


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError
            key = (info.st_dev, info.st_ino) if stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode) else None
            if key in _PIPES:
                return _PIPES[key]
            head = fh.read(SNIFF_BYTES)
            if not head.startswith(_GZIP):
                _refuse_binary(path, head)
            raw = head + fh.read()
    except FileNotFoundError:
        raise DomainError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DomainError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise DomainError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if key is not None:
        _PIPES[key] = raw
    return raw


def _gunzip(path: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:   # gzip.BadGzipFile is an OSError
        raise DomainError(f"{path}: cannot read: not valid gzip data ({exc})") from None


def _refuse_binary(path: Path, data: bytes) -> None:
    """A one-line DomainError if ``data`` (a file's first bytes, or all of them) is not text."""
    prefix = f"{path}: not a domain file"
    if data.startswith(_NUMPY):
        raise DomainError(f"{prefix} (looks like a NumPy array; make a box with 'exactcomp domain from-data')")
    if data.startswith(_ZIP) and (path.name.lower().endswith(".npz") or b".npy" in data[:4096]):
        raise DomainError(f"{prefix} (looks like a NumPy .npz archive; make a box with 'exactcomp domain from-data')")
    binary = _looks_binary(data)
    if _looks_like_onnx(data) or (binary and path.name.lower().endswith(".onnx")):
        raise DomainError(f"{prefix} (looks like ONNX)")
    if binary:
        raise DomainError(f"{prefix} (binary data; expected box JSON or VNN-LIB)")


def _looks_binary(data: bytes) -> bool:
    """NUL characters, or more than 5% of the first 4096 bytes' characters that no text holds (control
    characters, bytes invalid in the text's encoding). UTF-16/32 text (JSON allows it) is text: with a
    byte order mark, or, as JSON detects it from NUL bytes, when its characters are ASCII."""
    sample = data[:4096]
    encoding = json.detect_encoding(sample)
    text = codecs.decode(sample, encoding, errors="replace")
    if "\x00" in text:
        return True
    guessed = encoding[-3:] in ("-be", "-le")   # UTF-16/32 guessed from NUL bytes, no byte order mark
    odd = sum(ch == "\ufffd" or ch == "\x7f" or (ch < " " and ch not in "\t\n\r\f\v") or (guessed and ch > "\x7f")
              for ch in text)
    return odd * 20 > len(text)


#: ModelProto field number -> protobuf wire type (0 varint, 2 length-delimited).
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


def _varint(data: bytes, pos: int) -> tuple[int | None, int]:
    value, shift = 0, 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None, pos


def _looks_like_onnx(data: bytes) -> bool:
    """A serialized ONNX ModelProto: ``ir_version`` first (field 1, a varint: every writer sets it, and
    protobuf writes fields in number order), then ModelProto fields up to the graph (field 7). No text
    file starts with byte 0x08."""
    pos, first = 0, True
    while pos < len(data):
        tag, pos = _varint(data, pos)
        if tag is None or _MODEL_FIELDS.get(tag >> 3) != (tag & 7) or (first and tag >> 3 != 1):
            return False
        value, pos = _varint(data, pos)
        if value is None or (first and not 1 <= value < 256):
            return False
        if tag >> 3 == 7:
            return True
        if tag & 7 == 2:
            pos += value
        first = False
    return not first and pos == len(data)


def _decode(path: Path, data: bytes) -> str:
    encoding = json.detect_encoding(data)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DomainError(f"{path}: not {encoding.upper().replace('-SIG', '')} text (byte 0x{data[exc.start]:02x} at "
                          f"offset {exc.start}); box JSON and VNN-LIB files are UTF-8 text") from None
