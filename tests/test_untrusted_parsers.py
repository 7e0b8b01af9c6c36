"""Property tests: error bodies and name templates, whatever they hold, give an answer or a
typed error, never a crash or a path outside the directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xai_images import ValidationError  # noqa: E402
from xai_images._api._models import GeneratedImage  # noqa: E402
from xai_images._results._transfers import _format_name  # noqa: E402
from xai_images._wire._transport import error_fields  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["error", "code", "message", "type", "detail"]) | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@given(JSON)
def test_any_json_error_body_gives_text_or_none(body: Any) -> None:
    """Any JSON error body yields (message, code) as str or None, never an exception."""
    message, code, *_ = error_fields(body, json.dumps(body))
    assert message is None or isinstance(message, str)
    assert code is None or isinstance(code, str)


@given(st.text(max_size=2000))
def test_any_text_error_body_is_shown_short(text: str) -> None:
    """A non-JSON error body is shown stripped and cut to 500 characters."""
    message, code, *_ = error_fields(None, text)
    assert code is None
    assert message is None or len(message) <= 500


PATTERN = st.lists(
    st.sampled_from(["{request_id}", "{index}", "{stem}", "{", "}", "/", "\\", ".", "\x00"])
    | st.characters().map(str),
    max_size=12,
).map("".join)


@given(PATTERN, st.text(max_size=60))
def test_name_template_gives_a_plain_name_or_a_validation_error(pattern: str, rid: str) -> None:
    """Any template and any server request id: a single name inside the directory, or a
    ValidationError naming ``name``."""
    image = GeneratedImage(url="https://x/y.png", index=3, request_id=rid or None)
    try:
        name = _format_name(pattern, image)
    except ValidationError as exc:
        field = exc.field
        name = None
    if name is None:
        assert field == "name"
        return
    assert name not in ("", ".", "..")
    assert not any(char in name for char in "/\\\x00")
    assert (Path("/out") / name).parent == Path("/out")


@pytest.mark.parametrize(
    "pattern",
    ["{index[0]}", "{request_id.real}", "{index:s}", "{0}", "{}", "{nope}", "{index!z}", "{", "}"],
)
def test_malformed_name_templates_are_validation_errors(pattern: str) -> None:
    """Format fields that do not fit (indexing an int, attributes, bad specs): ValidationError."""
    image = GeneratedImage(url="https://x/y.png", index=3, request_id="r")
    with pytest.raises(ValidationError) as info:
        _format_name(pattern, image)
    assert info.value.field == "name"
