"""The one cattrs converter for every wire model (images answers, batches, files).

One leniency rule, for every field of every answer, because the server is in charge of its
answers and a new field or an odd value must never make the rest unreadable:

- unknown keys are ignored, and a missing or ``null`` field takes its default (``None`` for an
  optional one);
- a value of the wrong form is read as far as its meaning is plain and dropped otherwise:
  text fields take the text of a number (an object or list there is ``None``), numbers sent as
  strings are read (an unreadable optional number is ``None``, an unreadable counter ``0``),
  flags accept ``"true"``/``"1"``/``"yes"``, times accept RFC 3339, a bare date or epoch
  seconds (else ``None``), and an optional object that is not an object is ``None``;
- only what cannot be read at all (not an object, a required field missing) fails, as
  `APIResponseError` naming where and what (`structure`).

Built by a factory, never on ``cattrs.global_converter``.
"""

from __future__ import annotations

import datetime
import functools
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import cattrs

from .._errors import APIResponseError

__all__ = ["CONVERTER", "parse_time", "structure"]

_T = TypeVar("_T")
_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: Any) -> datetime.datetime | None:
    """A UTC time from RFC 3339, a bare ``YYYY-MM-DD`` date or epoch seconds; else ``None``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.10 reads only 3 or 6 fraction digits; RFC 3339 allows any number.
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _number(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return value if isinstance(value, str) else str(value)


def _flag(value: Any, _type: Any) -> bool:
    # bool("false") is True; the server may send a flag as a string.
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _stamp(value: Any, _type: Any) -> int | str | None:
    # A time as the server sent it (Unix seconds or text), kept as is when it is either.
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _optional_model(tp: Any) -> type | None:
    """The attrs class of ``X | None``, or ``None``."""
    try:
        return _optional_model_of(tp)
    except TypeError:  # an unhashable type form: worked out without the cache
        return _optional_model_of.__wrapped__(tp)


@functools.lru_cache(maxsize=256)
def _optional_model_of(tp: Any) -> type | None:
    # Asked on every nested model of every answer; the type forms are few and fixed.
    if not isinstance(tp, types.UnionType) and typing.get_origin(tp) is not typing.Union:
        return None
    members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    if len(members) == 1 and len(typing.get_args(tp)) == 2 and attrs.has(members[0]):
        return typing.cast(type, members[0])
    return None


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_structure_hook(bool, _flag)
    converter.register_structure_hook(int, lambda value, _type: _number(value) or 0)
    converter.register_structure_hook(str, lambda value, _type: str(value))
    converter.register_structure_hook_func(lambda t: t == (int | None), lambda v, _t: _number(v))
    converter.register_structure_hook_func(lambda t: t == (str | None), lambda v, _t: _text(v))
    converter.register_structure_hook_func(lambda t: t == (int | str | None), _stamp)
    converter.register_structure_hook_func(
        lambda t: t == (datetime.datetime | None), lambda v, _t: parse_time(v)
    )

    def optional_model(value: Any, tp: Any) -> Any:
        model: Any = _optional_model(tp)
        return converter.structure(value, model) if isinstance(value, Mapping) else None

    converter.register_structure_hook_func(lambda t: _optional_model(t) is not None, optional_model)
    return converter


CONVERTER = _make_converter()
"""The converter; use `structure`, which turns its failures into `APIResponseError`."""


def structure(data: Mapping[str, Any], cls: type[_T], where: str, what: str) -> _T:
    """``cls`` from the JSON object ``data`` under the leniency rule of this module.

    Raises:
        APIResponseError: what cannot be read at all; the message names ``where`` and ``what``.
    """
    try:
        return CONVERTER.structure(dict(data), cls)
    except (cattrs.BaseValidationError, KeyError, TypeError, ValueError) as exc:
        raise APIResponseError(f"{where}: unexpected {what}: {exc}") from exc
