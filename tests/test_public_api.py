"""The public surface stays honest: what `__all__` lists exists, is sorted, and is documented."""

from __future__ import annotations

import importlib
import inspect

import xai_images


def test_all_is_sorted_and_unique() -> None:
    """`xai_images.__all__` is one sorted list without duplicates."""
    assert list(xai_images.__all__) == sorted(set(xai_images.__all__))


def test_every_exported_name_exists_and_is_documented() -> None:
    """Every name in `__all__` resolves and classes and functions carry a docstring."""
    for name in xai_images.__all__:
        obj = getattr(xai_images, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_private_modules_declare_all() -> None:
    """Each private module declares `__all__`, and the package re-exports all of it."""
    exported = set(xai_images.__all__)
    for module_name in ("_errors",):
        module = importlib.import_module(f"xai_images.{module_name}")
        assert set(module.__all__) <= exported, module_name


def test_version_is_a_string() -> None:
    """`__version__` is set (the CLI and the User-Agent use it)."""
    assert isinstance(xai_images.__version__, str)
    assert xai_images.__version__
