"""One version number, in `_version.py`; the metadata, the User-Agent and the CLI agree on it."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

import xai_images
from xai_images._ui._cli import main
from xai_images.testing import FakeXAIServer


def test_installed_metadata_has_the_package_version() -> None:
    """The distribution's metadata version is `xai_images.__version__` (built from one file)."""
    assert importlib.metadata.version("xai-images") == xai_images.__version__


async def test_user_agent_sends_the_package_version(
    fake_xai_server: FakeXAIServer, xai_client: xai_images.AsyncClient
) -> None:
    """Every API request says `xai-images/<__version__>` in its User-Agent."""
    await xai_client.images.generate("a cat")
    (request,) = fake_xai_server.ledger.api_requests()
    assert request.header("User-Agent") == f"xai-images/{xai_images.__version__}"


def test_cli_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`xai-images --version` prints `xai-images <__version__>` and exits 0."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"xai-images {xai_images.__version__}"


def test_version_is_written_in_one_module_only() -> None:
    """No module of the package but `_version.py` spells the version number out."""
    package = Path(xai_images.__file__).parent
    spelled = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if xai_images.__version__ in path.read_text("utf-8")
    ]
    assert spelled == ["_version.py"]
