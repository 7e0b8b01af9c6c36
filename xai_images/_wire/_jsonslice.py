"""JSON parsing in slices, so that a large answer never holds the event loop for long.

``json.loads`` runs in C and keeps the GIL for the whole document: a 1 MB page of batch results
takes ~40 ms, and moving the call to a thread does not help, because the event loop needs the
GIL too. `loads` walks the containers itself (with an explicit stack, so nesting depth
cannot exhaust the recursion limit), leaves each scalar to the C scanner and hands control back
to the event loop every few milliseconds. Small documents are parsed with ``json.loads`` at once.

This module is at the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import time
from collections.abc import Generator
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

__all__ = ["MAX_STRING", "SMALL", "loads"]

SMALL = 64 * 1024
"""Documents up to this many bytes are parsed in one ``json.loads`` call (about 2 ms at worst)."""

MAX_STRING = 1024 * 1024
"""The longest single string value accepted (image data is taken out before parsing, so no
documented field comes near; one C call on a string this long takes a few ms)."""

_SLICE_SECONDS = 0.003
_DECODE_SLICE = 1024 * 1024
_WS = re.compile(r"[ \t\n\r]*")


def _skip(text: str, pos: int) -> int:
    """The position of the first non-whitespace character from ``pos``."""
    match = _WS.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


_DECODER = json.JSONDecoder()


async def loads(data: bytes) -> Any:
    """Parse the UTF-8 JSON document ``data``, yielding to the event loop between slices.

    Raises:
        ValueError: not JSON, or a string value longer than `MAX_STRING`.
    """
    if len(data) <= SMALL:
        return json.loads(data)
    text = await _decode(data)
    steps = _parse(text)
    try:
        while True:
            next(steps)
            await asyncio.sleep(0)
    except StopIteration as done:
        return done.value
    except IndexError as exc:
        raise ValueError("unexpected end of the JSON document") from exc


async def _decode(data: bytes) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    parts: list[str] = []
    for start in range(0, len(data), _DECODE_SLICE):
        parts.append(decoder.decode(view[start : start + _DECODE_SLICE]))
        await asyncio.sleep(0)
    parts.append(decoder.decode(b"", final=True))
    text = "".join(parts)
    # json.loads accepts a byte order mark in bytes; so do we.
    return text[1:] if text.startswith("\ufeff") else text


def _string_at(text: str, pos: int) -> tuple[str, int]:
    """The string starting after the quote at ``pos - 1``, refusing overlong ones first."""
    end = pos
    while True:
        end = text.find('"', end)
        if end < 0:
            raise ValueError(f"unterminated string at {pos - 1}")
        backslashes = 0
        while text[end - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            break
        end += 1
        if end - pos > MAX_STRING:
            break
    if end - pos > MAX_STRING:
        raise ValueError(f"a string value at {pos - 1} is longer than {MAX_STRING} characters")
    value: str
    value, after = scanstring(text, pos, True)
    return value, after


def _parse(text: str) -> Generator[None, None, Any]:
    """Parse ``text``; a generator that yields whenever the slice time is used up."""
    pos = _skip(text, 0)
    # Each open container with the key its next value goes under (None for lists).
    stack: list[tuple[list[Any] | dict[str, Any], str | None]] = []
    deadline = time.perf_counter() + _SLICE_SECONDS
    count = 0
    while True:
        char = text[pos]
        value: Any
        if char == "{":
            pos = _skip(text, pos + 1)
            if text[pos] == "}":
                value, pos = {}, pos + 1
            else:
                key, pos = _key(text, pos)
                stack.append(({}, key))
                continue
        elif char == "[":
            pos = _skip(text, pos + 1)
            if text[pos] == "]":
                value, pos = [], pos + 1
            else:
                stack.append(([], None))
                continue
        elif char == '"':
            value, pos = _string_at(text, pos + 1)
        else:
            value, pos = _DECODER.raw_decode(text, pos)
        # Attach the value; close every container that ends here.
        while True:
            if not stack:
                if _skip(text, pos) != len(text):
                    raise ValueError(f"extra data after the JSON document at {pos}")
                return value
            container, slot = stack[-1]
            if isinstance(container, dict):
                assert slot is not None
                container[slot] = value
            else:
                container.append(value)
            pos = _skip(text, pos)
            char = text[pos]
            if char == ",":
                pos = _skip(text, pos + 1)
                if isinstance(container, dict):
                    key, pos = _key(text, pos)
                    stack[-1] = (container, key)
                break
            closing = "}" if isinstance(container, dict) else "]"
            if char != closing:
                raise ValueError(f"expected ',' or {closing!r} at {pos}")
            stack.pop()
            value, pos = container, pos + 1
        count += 1
        if count & 0x3F == 0 and time.perf_counter() > deadline:
            yield
            deadline = time.perf_counter() + _SLICE_SECONDS


def _key(text: str, pos: int) -> tuple[str, int]:
    """An object key and the position of its value."""
    if text[pos] != '"':
        raise ValueError(f"expected a property name at {pos}")
    key, pos = _string_at(text, pos + 1)
    pos = _skip(text, pos)
    if text[pos] != ":":
        raise ValueError(f"expected ':' at {pos}")
    return key, _skip(text, pos + 1)
