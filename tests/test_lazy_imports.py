"""``import xai_images`` loads neither the CLI, rich, the notebook display nor the Batch-API
engine; each is imported when first used."""

from __future__ import annotations

import json
import subprocess
import sys

# Modules (or packages, by prefix) that a plain ``import xai_images`` must not load.
NOT_AT_IMPORT = (
    "xai_images._ui",  # the CLI, its renderers, the demo
    "rich",
    "IPython",
    "xai_images._results._preview",  # notebook display of images
    "xai_images._bulk._live",  # notebook display of bulk progress
    "xai_images._bulk._batch_remote",  # the Batch-API engine
    "xai_images._bulk._remote_results",
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
    assert "xai_images._bulk._client" in loaded  # the check sees the package's modules
    assert _heavy(loaded) == []


def test_the_batch_api_engine_loads_when_its_names_are_used() -> None:
    """``xai_images.bulk.RemoteBatchRun`` imports the Batch-API engine on first use."""
    loaded = _loaded_after("import xai_images.bulk\nxai_images.bulk.RemoteBatchRun")
    assert "xai_images._bulk._batch_remote" in loaded
