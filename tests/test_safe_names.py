"""Property tests: the one rule that turns untrusted text into a file name component."""

from __future__ import annotations

from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xai_images._results._files import safe_component  # noqa: E402

# Text heavy in the characters that matter: dots, separators, NUL, drive colons.
HOSTILE = st.text(
    alphabet=st.one_of(st.sampled_from("./\\:\x00 *?<>|\x7fC"), st.characters()), max_size=400
)


@given(HOSTILE)
def test_result_is_one_harmless_component(text: str) -> None:
    """Whatever the input: one non-empty component, no separator, NUL, leading dot or overlength."""
    name = safe_component(text)
    assert name
    assert name not in (".", "..")
    assert not name.startswith(".")
    assert not any(char in name for char in "/\\:\x00")
    assert all(ord(char) >= 0x20 for char in name)
    assert len(name.encode("utf-8")) <= 180
    base = Path("/base")
    assert (base / name).parent == base


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,60}", fullmatch=True))
def test_ordinary_names_are_unchanged(text: str) -> None:
    """Request ids as the API sends them come back as they are."""
    if text.lower() in ("con", "prn", "aux", "nul") or text.lower()[:3] in ("com", "lpt"):
        return
    assert safe_component(text) == text


@given(st.text(min_size=200, max_size=300), st.text(min_size=200, max_size=300))
def test_long_names_stay_distinct(first: str, second: str) -> None:
    """Two different long inputs do not collide once cut (the hash is of the whole input)."""
    if first == second:
        return
    a, b = safe_component(first), safe_component(second)
    if len(a.encode()) == 180 and len(b.encode()) == 180:
        assert a != b
