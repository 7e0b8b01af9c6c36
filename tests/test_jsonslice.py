"""Property tests: the sliced JSON parser agrees with ``json.loads`` and fails like it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xai_images._wire._jsonslice import MAX_STRING, SMALL, _parse, loads  # noqa: E402

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)


def _run(text: str) -> Any:
    steps = _parse(text)
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@given(JSON, st.sampled_from([None, 2]))
def test_sliced_parse_equals_json_loads(value: Any, indent: int | None) -> None:
    """Any JSON document, compact or indented, parses to what json.loads gives."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    assert _same(_run(text), json.loads(text))


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_sliced_parse_fails_where_json_loads_fails(text: str) -> None:
    """Text that json.loads refuses is a ValueError (or IndexError at the end), never a hang."""
    try:
        expected: Any = json.loads(text)
    except ValueError:
        with pytest.raises((ValueError, IndexError)):
            _run(text)
    else:
        assert _same(_run(text), expected)


async def test_large_document_is_parsed_in_slices() -> None:
    """A document above the one-call size parses through the sliced path to the same value."""
    doc = {"results": [{"id": str(i), "url": "https://x/" + "a" * 200} for i in range(2000)]}
    data = json.dumps(doc).encode()
    assert len(data) > SMALL
    assert await loads(data) == doc


async def test_deep_nesting_is_a_value_error_or_parses_without_recursion() -> None:
    """100 000 nested lists parse with the explicit stack (no RecursionError)."""
    depth = 100_000
    data = ("[" * depth + "]" * depth).encode()
    value = await loads(data)
    for _ in range(depth - 1):
        (value,) = value
    assert value == []


async def test_overlong_string_is_refused() -> None:
    """A single string value above MAX_STRING is a ValueError naming the limit."""
    data = json.dumps({"a": "x" * (MAX_STRING + 1)}).encode()
    with pytest.raises(ValueError, match="longer than"):
        await loads(data)
