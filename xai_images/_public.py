"""Make the public names of a public module look like they live there.

Classes and functions keep the ``__module__`` of the private module that defines them unless
told otherwise, so tracebacks, reprs and ``help()`` would show ``xai_images._errors.RateLimitError``
for an error users import as ``xai_images.RateLimitError``. Pickling still works: it looks a
class up by ``__module__`` and ``__qualname__``, and the public module exports it.
"""

from __future__ import annotations

import contextlib
import inspect
import types
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["publish"]


def publish(module: str, namespace: Mapping[str, Any]) -> None:
    """Set ``__module__`` to ``module`` on the classes and functions in ``namespace["__all__"]``.

    Type aliases (unions, literals) cannot carry a ``__module__`` and are left alone.
    """
    for name in namespace["__all__"]:
        obj = namespace[name]
        # Before Python 3.11, a parametrised alias (``Callable[[Event], None]``) passes
        # isinstance(..., type); it is an alias, not a class.
        if isinstance(obj, types.GenericAlias) or not (
            isinstance(obj, type) or inspect.isfunction(obj)
        ):
            continue
        if isinstance(obj, type) and attrs.has(obj):
            # String annotations are resolved against the defining module; after the move they
            # would be looked up in the public one. Resolve them while that is still right (a
            # name imported only for type checking cannot be: cattrs never structures those).
            with contextlib.suppress(NameError, TypeError):
                attrs.resolve_types(obj)
        obj.__module__ = module
