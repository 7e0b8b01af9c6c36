"""``import xai_images`` loads neither the CLI, rich, the notebook display nor the Batch-API
engine; each is imported when first used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Modules (or packages, by prefix) that a plain ``import xai_images`` must not load.
NOT_AT_IMPORT = (
    "xai_images._ui",  # the CLI, its renderers, the demo
    "rich",
    "IPython",
    "xai_images._results._preview",  # notebook display of images
    "xai_images._bulk._live",  # notebook display of bulk progress
    "xai_images._bulk._source_batchapi",  # the Batch-API engine
    "xai_images._bulk._batchapi_collect",
)


def _loaded_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


def _heavy(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded for p in NOT_AT_IMPORT if m == p or m.startswith(p + "."))


def test_import_loads_nothing_heavy() -> None:
    """A plain import of the package (and of its public submodules) loads none of them."""
    loaded = _loaded_after("import xai_images, xai_images.bulk, xai_images.hooks")
    # The check sees the package's modules (the client itself now loads on first use, below).
    assert "xai_images._bulk._source_realtime" in loaded
    assert _heavy(loaded) == []


def test_the_batch_api_engine_loads_when_its_names_are_used() -> None:
    """``xai_images.bulk.RemoteBatchRun`` imports the Batch-API engine on first use."""
    loaded = _loaded_after("import xai_images.bulk\nxai_images.bulk.RemoteBatchRun")
    assert "xai_images._bulk._source_batchapi" in loaded


def test_plain_import_defers_the_client_and_its_dependencies() -> None:
    """``import xai_images`` alone loads neither the client nor aiohttp, cattrs or anyio (they
    cost most of the import time); the first use of ``AsyncClient`` loads the client, and
    ``client.batches`` is what loads the Batch-API resource."""
    deferred = ("aiohttp", "cattrs", "anyio", "xai_images._bulk._client", "xai_images._sync")
    loaded = _loaded_after("import xai_images")
    assert sorted(m for m in loaded for d in deferred if m == d or m.startswith(d + ".")) == []
    loaded = _loaded_after("import xai_images\nxai_images.AsyncClient")
    assert {"aiohttp", "xai_images._bulk._client"} <= loaded
    assert "xai_images._api._batches" not in loaded
    assert "anyio" not in loaded


def test_lazy_names_are_the_public_objects() -> None:
    """A name loaded on first use is the same object, says it lives in ``xai_images``, and is
    listed by ``dir()``; an unknown name raises AttributeError."""
    import xai_images
    from xai_images._bulk._client import AsyncClient

    assert xai_images.AsyncClient is AsyncClient
    assert AsyncClient.__module__ == "xai_images"
    assert {"AsyncClient", "Client", "bulk", "SavedImage"} <= set(dir(xai_images))
    with pytest.raises(AttributeError, match="no_such_name"):
        xai_images.no_such_name  # noqa: B018
