"""The input region of a VNN-LIB property (the VNN-COMP format, VNN-LIB 1.0), as boxes.

A property declares the network's inputs ``X_0 .. X_{n-1}`` (flattened in the ONNX input's layout) and
outputs ``Y_j``, and asserts constraints. exactcomp reads the *input* constraints only:

* ``(assert (<= X_i c))``, ``(assert (>= X_i c))`` (either operand order; ``<`` and ``>`` are read as
  ``<=`` and ``>=``: the closure, a superset, so exactness on it covers the open set), also inside
  ``(and ...)``: bounds of one box;
* ``(assert (or (and <bounds>) (and <bounds>) ...))`` over inputs only: a union of boxes (each disjunct
  intersected with the plain bounds);
* assertions over outputs only (the property to verify) are ignored.

Anything else on inputs (a linear combination, a comparison of two inputs, an input missing a lower or
upper bound, an empty box, inputs and outputs in one assertion) is a :class:`DomainError` naming the file
and line. Files may be gzip-compressed (``.gz``); they are read once, so pipes work
(:mod:`exactcomp.domains.source`). The maintained ``vnnlib`` package on PyPI (1.0.x) parses the newer
VNN-LIB 2.0 syntax and rejects these 1.0 files, hence this small reader of the subset that defines boxes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from exactcomp.domains.source import read_source
from exactcomp.errors import DomainError

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_VAR = re.compile(r"^([XY])_(\d+)$")
#: Most boxes a file's disjunctions may produce.
MAX_PARTS = 256
_COMPARE = {"<=": "<=", "<": "<=", ">=": ">=", ">": ">="}


def _parse(text: str, source: str) -> list:
    """Top-level S-expressions as nested lists of ``(token, line)`` leaves; each list is tagged with its line."""
    stack, out = [[]], None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split(";", 1)[0]
        for token in _TOKEN.findall(line):
            if token == "(":
                stack.append(_Expr(number))
            elif token == ")":
                if len(stack) == 1:
                    raise DomainError(f"{source}:{number}: unbalanced ')'")
                done = stack.pop()
                stack[-1].append(done)
            else:
                stack[-1].append((token, number))
    if len(stack) != 1:
        raise DomainError(f"{source}:{stack[-1].line}: '(' is never closed")
    out = stack[0]
    return out


class _Expr(list):
    def __init__(self, line: int):
        super().__init__()
        self.line = line


def _head(expr) -> str | None:
    return expr[0][0] if isinstance(expr, _Expr) and expr and isinstance(expr[0], tuple) else None


def _variables(expr) -> set:
    if isinstance(expr, tuple):
        m = _VAR.match(expr[0])
        return {m.group(1)} if m else set()
    return set().union(*(_variables(e) for e in expr)) if expr else set()


def _number(expr, source: str, line: int) -> float | None:
    """A numeric literal, also ``(- c)``; None if ``expr`` is not one."""
    if isinstance(expr, tuple):
        try:
            value = float(expr[0])
        except ValueError:
            return None
        if not np.isfinite(value):
            raise DomainError(f"{source}:{line}: bound {expr[0]} is not finite")
        return value
    if _head(expr) == "-" and len(expr) == 2:
        inner = _number(expr[1], source, line)
        return None if inner is None else -inner
    return None


def _bounds(expr, source: str) -> list[tuple[int, str, float]]:
    """The ``(input, '<=' | '>=', value)`` bounds of an ``and`` of single-input comparisons."""
    line = expr.line if isinstance(expr, _Expr) else expr[1]
    head = _head(expr)
    if head == "and":
        return [b for e in expr[1:] for b in _bounds(e, source)]
    if head in _COMPARE and len(expr) == 3:
        op, (a, b) = _COMPARE[head], expr[1:]
        for var, const, flip in ((a, b, False), (b, a, True)):
            m = _VAR.match(var[0]) if isinstance(var, tuple) else None
            value = _number(const, source, line)
            if m and m.group(1) == "X" and value is not None:
                if flip:
                    op = "<=" if op == ">=" else ">="
                return [(int(m.group(2)), op, value)]
    raise DomainError(f"{source}:{line}: input constraint is not a bound on one X_i by a number "
                      f"(only boxes, and unions of boxes with 'or', are supported)")


def read_vnnlib_boxes(path: str | Path, size: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The input boxes ``[(lower, upper), ...]`` of the VNN-LIB file ``path`` (one, or one per disjunct of
    an ``or``); ``size``: the model's flat input size, checked against the declared inputs."""
    source = read_source(path, "VNN-LIB file")
    return vnnlib_boxes(source.text, str(source.path), size)


def vnnlib_boxes(text: str, source: str, size: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`read_vnnlib_boxes` of the VNN-LIB ``text`` of the file ``source`` (named in errors)."""
    declared, plain, unions = set(), [], []
    for expr in _parse(text, source):
        head = _head(expr)
        if not isinstance(expr, _Expr):
            raise DomainError(f"{source}:{expr[1]}: unexpected '{expr[0]}' outside an expression")
        if head == "declare-const" and len(expr) >= 2 and isinstance(expr[1], tuple):
            m = _VAR.match(expr[1][0])
            if m and m.group(1) == "X":
                declared.add(int(m.group(2)))
            continue
        if head == "declare-network" or head == "declare-input":
            raise DomainError(f"{source}:{expr.line}: VNN-LIB 2.0 syntax ({head}) is not read; use the 1.0 format "
                              "of the VNN-COMP benchmarks (declare-const X_i Real)")
        if head != "assert" or len(expr) != 2:
            continue   # set-logic, comments, check-sat, ...: not constraints
        body, kinds = expr[1], _variables(expr[1])
        if "X" not in kinds:
            continue   # the output property: not part of the domain
        if "Y" in kinds:
            raise DomainError(f"{source}:{expr.line}: an assertion mixing inputs and outputs does not define an input box")
        if _head(body) == "or":
            unions.append([_bounds(part, source) for part in body[1:]])
        else:
            plain += _bounds(body, source)
    if not declared:
        raise DomainError(f"{source}: no input variables declared (declare-const X_i Real)")
    n = max(declared) + 1
    if declared != set(range(n)):
        raise DomainError(f"{source}: inputs X_0..X_{n - 1} are not all declared")
    if size is not None and n != size:
        raise DomainError(f"{source}: declares {n} inputs X_i, the model input has {size} entries")
    parts = [[]]
    for disjuncts in unions:   # (a or b) and (c or d): every combination
        parts = [p + d for p in parts for d in disjuncts]
        if len(parts) > MAX_PARTS:
            raise DomainError(f"{source}: the 'or' constraints give more than {MAX_PARTS} boxes")
    return [_box_of(plain + extra, n, source) for extra in parts]


def _box_of(bounds, n: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    lower, upper = np.full(n, -np.inf), np.full(n, np.inf)
    for i, op, value in bounds:
        if i >= n:
            raise DomainError(f"{source}: bound on X_{i}, which is not declared")
        if op == ">=":
            lower[i] = max(lower[i], value)
        else:
            upper[i] = min(upper[i], value)
    for what, arr in (("lower", lower), ("upper", upper)):
        missing = np.flatnonzero(~np.isfinite(arr))
        if missing.size:
            raise DomainError(f"{source}: X_{missing[0]} has no {what} bound ({missing.size} inputs lack one): "
                              "the input region must be a box")
    empty = np.flatnonzero(lower > upper)
    if empty.size:
        i = empty[0]
        raise DomainError(f"{source}: X_{i} has lower bound {lower[i]:g} above its upper bound {upper[i]:g} (empty box)")
    return lower, upper


def vnnlib_text(parts, outputs: int = 0) -> str:
    """A VNN-LIB 1.0 file of the input boxes ``parts`` (several: an ``or`` of boxes), declaring ``outputs``
    outputs ``Y_j`` and no output property (for other verifiers, or to read back)."""
    n = parts[0].size
    lines = [f"; input domain written by exactcomp: {len(parts)} box{'es' if len(parts) > 1 else ''}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(n)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(outputs)]

    def bounds(box, indent: str) -> list[str]:
        return [f"{indent}(>= X_{i} {lo!r}) (<= X_{i} {hi!r})" for i, (lo, hi) in
                enumerate(zip(box.lower.tolist(), box.upper.tolist()))]

    if len(parts) == 1:
        lines += [f"(assert (>= X_{i} {lo!r}))\n(assert (<= X_{i} {hi!r}))"
                  for i, (lo, hi) in enumerate(zip(parts[0].lower.tolist(), parts[0].upper.tolist()))]
    else:
        lines.append("(assert (or")
        for box in parts:
            lines += ["  (and", *bounds(box, "    "), "  )"]
        lines.append("))")
    return "\n".join(lines) + "\n"
