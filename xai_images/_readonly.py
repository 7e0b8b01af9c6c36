"""``ReadOnly``: a documented read-only property that shows a private attribute.

The clients and rate limiters expose many values they keep privately (``client.base_url`` is
``client._base_url``); one property type says so in a line each (plus the attribute's
docstring below it) instead of four.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

__all__ = ["ReadOnly"]

_T = TypeVar("_T")


class ReadOnly(property, Generic[_T]):
    """A read-only property whose value is the instance's ``source`` (a dotted path).

    Args:
        source: the private attribute shown, e.g. ``"_base_url"`` or ``"_async.base_url"``.
    """

    def __init__(self, source: str) -> None:
        super().__init__(operator.attrgetter(source))

    def __set_name__(self, owner: type, name: str) -> None:
        # The full description is the attribute docstring below the declaration (where the
        # API reference and editors read it); at run time the property names itself.
        self.__doc__ = f"``{owner.__name__}.{name}`` (read-only)."

    if TYPE_CHECKING:  # what the value's type is, for the type checker

        @overload
        def __get__(self, instance: None, owner: type | None = None) -> ReadOnly[_T]: ...

        @overload
        def __get__(self, instance: object, owner: type | None = None) -> _T: ...

        def __get__(self, instance: object, owner: type | None = None) -> Any: ...
