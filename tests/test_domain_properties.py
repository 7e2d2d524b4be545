"""Property-based tests of the domain loader and the Box constructor (hypothesis).

Whatever a user writes into a box file or passes to ``exactcomp.Box``, the only exception is
``ExactcompError`` (a one-line message in the CLI), and every valid box round-trips exactly.
"""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from exactcomp.domain import Box, load_box, make_box
from exactcomp.errors import ExactcompError

SHAPE = (2, 3)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**400, max_value=10**400),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=7),
                                                                  st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                           max_leaves=30)
shaped_lists = st.one_of(
    st.floats(-1e6, 1e6),
    hnp.arrays(np.float64, st.sampled_from([SHAPE, (1, *SHAPE), (6,), (5,), (3, 2)]),
               elements=st.floats(-1e6, 1e6)).map(lambda a: a.tolist()),
)


def _only_exactcomp_errors(call):
    try:
        return call()
    except ExactcompError as exc:
        assert "\n" not in str(exc)   # one line
        return None


@SETTINGS
@given(document=st.one_of(json_values, st.fixed_dictionaries({"lower": json_values, "upper": json_values}),
                          st.fixed_dictionaries({"lower": shaped_lists, "upper": shaped_lists})))
def test_box_file_never_raises_anything_else(tmp_path, document):
    path = tmp_path / "box.json"
    path.write_text(json.dumps(document, allow_nan=True, default=str))
    box = _only_exactcomp_errors(lambda: load_box(path, SHAPE))
    if box is not None:
        assert box.size == 6
        assert np.all(np.isfinite(box.lower)) and np.all(box.lower <= box.upper)


@SETTINGS
@given(raw=st.binary(max_size=64))
def test_box_file_garbage_bytes(tmp_path, raw):
    path = tmp_path / "box.json"
    path.write_bytes(raw)
    _only_exactcomp_errors(lambda: load_box(path, SHAPE))


any_dtype = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8, np.uint16, np.bool_,
                             np.complex128, np.str_, object])


@SETTINGS
@given(lower=st.one_of(json_values, hnp.arrays(any_dtype, hnp.array_shapes(max_dims=3, max_side=4))),
       upper=st.one_of(json_values, hnp.arrays(any_dtype, hnp.array_shapes(max_dims=3, max_side=4))))
def test_box_constructor_never_raises_anything_else(lower, upper):
    box = _only_exactcomp_errors(lambda: Box(lower, upper))
    if box is not None:
        assert box.lower.shape == box.upper.shape and box.lower.dtype == np.float64
        assert np.all(np.isfinite(box.lower)) and np.all(np.isfinite(box.upper)) and np.all(box.lower <= box.upper)


finite = st.floats(-1e300, 1e300, allow_nan=False)


@SETTINGS
@given(pairs=st.lists(st.tuples(finite, finite), min_size=6, max_size=6), layout=st.sampled_from(["shape", "batch", "flat"]))
def test_valid_box_round_trips(tmp_path, pairs, layout):
    lower = np.array([min(a, b) for a, b in pairs])
    upper = np.array([max(a, b) for a, b in pairs])
    reshape = {"shape": SHAPE, "batch": (1, *SHAPE), "flat": (6,)}[layout]
    path = tmp_path / "box.json"
    path.write_text(json.dumps({"lower": lower.reshape(reshape).tolist(), "upper": upper.reshape(reshape).tolist()}))
    box = load_box(path, SHAPE)
    np.testing.assert_array_equal(box.lower, lower)
    np.testing.assert_array_equal(box.upper, upper)
    again = make_box(box.lower.tolist(), box.upper.tolist(), SHAPE)
    np.testing.assert_array_equal(again.lower, lower)
    assert Box(lower, upper).fixed.tolist() == [a == b for a, b in zip(lower, upper)]


def test_named_field_errors(tmp_path):
    """The error names the field and the offending value type."""
    cases = {'{"lower": "0", "upper": 1}': "field 'lower'", '{"lower": 0, "upper": true}': "field 'upper'",
             '{"lower": [0, 0, 0, 0, 0, null], "upper": 1}': "NoneType",
             '{"lower": 0, "upper": 1' + "0" * 400 + "}": "too large"}
    for text, needle in cases.items():
        path = tmp_path / "box.json"
        path.write_text(text)
        try:
            load_box(path, SHAPE)
        except ExactcompError as exc:
            assert needle in str(exc) and str(path) in str(exc), (text, str(exc))
        else:
            raise AssertionError(f"accepted {text}")


def test_box_constructor_rejects_inverted_and_overflow():
    for lower, upper in (([1.0], [0.0]), ([10**400], [10**401]), ([0.0], [math.inf]), (["0"], ["1"]), ([True], [True])):
        try:
            Box(lower, upper)
        except ExactcompError:
            continue
        raise AssertionError((lower, upper))
