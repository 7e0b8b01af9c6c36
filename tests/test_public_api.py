"""The public surface stays honest: what each public module's `__all__` lists exists, is
sorted, documented, and says it lives where users import it from; the top level stays small."""

from __future__ import annotations

import importlib
import inspect
import pickle
import types
from types import ModuleType

import pytest

import xai_images
import xai_images.bulk
import xai_images.hooks
import xai_images.outputs
import xai_images.testing
import xai_images.types

PUBLIC_MODULES = [
    xai_images,
    xai_images.bulk,
    xai_images.hooks,
    xai_images.outputs,
    xai_images.types,
    xai_images.testing,
]
MAX_TOP_LEVEL = 20  # names besides exceptions (and __version__)


def module_id(module: ModuleType) -> str:
    return module.__name__


def is_class_or_function(obj: object) -> bool:
    """A class or a function, not a type alias (before Python 3.11, ``inspect.isclass`` is also
    true of a parametrised alias such as ``Callable[[Event], None]``)."""
    if isinstance(obj, types.GenericAlias):
        return False
    return inspect.isclass(obj) or inspect.isfunction(obj)


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=module_id)
def test_all_is_sorted_and_unique(module: ModuleType) -> None:
    """Each public module's `__all__` is one sorted list without duplicates."""
    assert list(module.__all__) == sorted(set(module.__all__))


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=module_id)
def test_every_exported_name_exists_and_is_documented(module: ModuleType) -> None:
    """Every name in `__all__` resolves; classes and functions carry a docstring, and a type
    alias is described in its module's docstring."""
    for name in module.__all__:
        obj = getattr(module, name)
        if is_class_or_function(obj):
            assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"
        elif not isinstance(obj, (str, int, float)):
            assert f"``{name}``" in (module.__doc__ or ""), f"{module.__name__}.{name}"


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=module_id)
def test_public_names_say_where_they_are_imported_from(module: ModuleType) -> None:
    """Tracebacks and reprs show the public path (`xai_images.RateLimitError`), not a private
    module's."""
    for name in module.__all__:
        obj = getattr(module, name)
        if is_class_or_function(obj):
            assert obj.__module__ == module.__name__, name


def test_examples_of_public_paths() -> None:
    """An exception, a bulk name and a request class each name their public module."""
    assert xai_images.RateLimitError.__module__ == "xai_images"
    assert xai_images.bulk.Outcome.__module__ == "xai_images.bulk"
    assert repr(xai_images.GenerateRequest) == "<class 'xai_images.GenerateRequest'>"


def test_top_level_stays_small() -> None:
    """At most 20 top-level names besides exceptions; bulk-job names live in xai_images.bulk."""
    names = [
        n
        for n in xai_images.__all__
        if not (
            inspect.isclass(getattr(xai_images, n))
            and issubclass(getattr(xai_images, n), BaseException)
        )
    ]
    assert len(names) <= MAX_TOP_LEVEL, names
    assert not set(xai_images.bulk.__all__) & set(xai_images.__all__)


def test_public_objects_still_pickle() -> None:
    """Rewriting `__module__` keeps pickling by reference working (classes and instances)."""
    file_id = xai_images.FileId("file-1")
    assert pickle.loads(pickle.dumps(file_id)) == file_id
    for cls in (xai_images.RateLimitError, xai_images.bulk.Outcome, xai_images.EditRequest):
        assert pickle.loads(pickle.dumps(cls)) is cls
    request = xai_images.GenerateRequest("a cat", n=2)
    assert pickle.loads(pickle.dumps(request)) == request


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
