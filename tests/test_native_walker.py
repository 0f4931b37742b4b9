"""The C walker does exactly what the Python reference walker does."""

from __future__ import annotations

import copy
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intelgraph_privacy import Principal
from intelgraph_privacy.redact import apply, mask
from intelgraph_privacy.redact.native import NATIVE_WALKER, native_walker
from intelgraph_privacy.testing import RedactionCase, principals
from tests.test_properties import HARNESS

pytestmark = pytest.mark.skipif(
    native_walker() is None, reason="the C walker is not built (pure-Python install)"
)
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def test_ci_builds_the_native_walker() -> None:
    if os.environ.get("CI") == "true":
        assert NATIVE_WALKER, "CI must run the C walker (is a C compiler installed?)"


@given(st.text())
def test_native_mask_equals_python_mask(value: str) -> None:
    walker = native_walker()
    assert walker is not None
    assert walker.mask(value) == mask(value)


def _both(case: RedactionCase, upstream: dict[str, Any]) -> None:
    python = apply(case.plan, copy.deepcopy(upstream), native=False)
    native = apply(case.plan, copy.deepcopy(upstream), native=True)
    # Byte-identical output (key order, -0.0, error order) and identical reports.
    assert orjson.dumps(native.response) == orjson.dumps(python.response)
    assert native.report == python.report


@SETTINGS
@given(case=HARNESS.cases(principals()))
def test_native_walk_equals_python_walk(case: RedactionCase) -> None:
    _both(case, case.original)


def _positions(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_positions(item, (*path, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_positions(item, (*path, i)))
    return found


@SETTINGS
@given(case=HARNESS.cases(principals()), data=st.data())
def test_native_walk_equals_python_walk_on_drifted_responses(
    case: RedactionCase, data: st.DataObject
) -> None:
    # Schema drift and garbage: replace values, add unknown keys, at random positions.
    upstream = copy.deepcopy(case.original)
    positions = [p for p in _positions(upstream["data"]) if p]
    for _ in range(data.draw(st.integers(0, 4))):
        if not positions:
            break
        path = data.draw(st.sampled_from(positions))
        parent = upstream["data"]
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            parent[data.draw(st.text(max_size=6))] = data.draw(JSON)
        else:
            parent[path[-1]] = data.draw(JSON)
        positions = [p for p in _positions(upstream["data"]) if p]
    _both(case, upstream)


def test_native_walk_refuses_non_string_keys() -> None:
    who = Principal(sub="u1", tenant="t1", roles=("investigator",), purpose="investigation")
    case_plan = HARNESS.redactor.plan("{ people { name } }", None, who)
    with pytest.raises(TypeError, match="keys must be str"):
        apply(case_plan, {"data": {"people": [{1: "x", "name": "Maria"}]}}, native=True)
