"""Naming an output target: `output_for` turns what a caller passed into an `Output`.

- a plain path (``str`` or ``os.PathLike``) or a ``file://`` URL: a `LocalDirectory`;
- an object that implements `Output`: used as it is;
- an object-store URL (``s3://``, ``gs://``, ``az://``, ``memory://``): a `StoreOutput`
  through obstore (``_objstore.py``); without the ``storage`` extra a `StoreUnavailableError`
  naming the target, raised before any request is sent (a path like ``s3://bucket`` never
  becomes a local folder named ``s3:``);
- any other ``scheme://``: a `ValidationError`.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .._errors import ValidationError
from ._files import WriterPool
from ._local import BATCH_BYTES, IDLE_FLUSH, LocalDirectory
from ._objstore import STORE_SCHEMES, shown_target
from ._objstore import store_output as _store_output
from ._output import Output

__all__ = [
    "STORE_SCHEMES",
    "is_output",
    "is_url",
    "output_for",
    "shown_target",
    "store_output",
]


# "scheme://": anything else (C:\dir, ./s3:, a:b) is a path.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` is a ``scheme://`` URL rather than a path."""
    text = os.fspath(target)
    return isinstance(text, str) and _SCHEME.match(text) is not None


def is_output(target: object) -> bool:
    """Whether ``target`` implements the `Output` protocol (rather than naming a path)."""
    return not isinstance(target, (str, bytes, os.PathLike)) and isinstance(target, Output)


def store_output(url: str) -> Output:
    """The `Output` for an object-store URL: a `StoreOutput` (``_objstore.py``).

    Raises:
        StoreUnavailableError: the ``storage`` extra is not installed (the message says how to
            install it), or the URL cannot be turned into a store (names the target).
    """
    return _store_output(url)


def _local_path(url: str, field: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise ValidationError(field, shown_target(url), "a file:///absolute/path URL")
    path = url2pathname(parts.path)  # unquotes
    if not path or not os.path.isabs(path):
        raise ValidationError(field, shown_target(url), "a file:///absolute/path URL")
    return path


def output_for(
    target: str | os.PathLike[str] | Output,
    *,
    field: str = "output",
    fsync: bool = False,
    writers: WriterPool | None = None,
    batch: int = BATCH_BYTES,
    idle: float = IDLE_FLUSH,
) -> Output:
    """The `Output` that ``target`` names (see the module docstring).

    Args:
        field: how errors name the argument (``"directory"``, ``"path"``, ...).
        fsync, writers, batch, idle: settings of a `LocalDirectory` made here.

    Raises:
        StoreUnavailableError: an object-store URL without the ``storage`` extra (a
            `ConfigurationError`).
        ValidationError: another URL scheme, a malformed ``file://`` URL, or a value that is
            neither a path, a URL nor an `Output`.
    """
    if isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        if not isinstance(text, str):
            raise ValidationError(field, text, "a str path, a URL, or an Output")
        match = _SCHEME.match(text)
        if match is not None:
            scheme = match.group(1).lower()
            if scheme == "file":
                text = _local_path(text, field)
            elif scheme in STORE_SCHEMES:
                return store_output(text)
            else:
                raise ValidationError(
                    field,
                    shown_target(text),
                    "a directory path, a file:// URL or an object-store URL "
                    f"({', '.join(sorted(s + '://' for s in STORE_SCHEMES))})",
                )
        return LocalDirectory(text, fsync=fsync, writers=writers, batch=batch, idle=idle)
    if is_output(target):
        return target
    raise ValidationError(field, target, "a directory path, a URL, or an Output")
