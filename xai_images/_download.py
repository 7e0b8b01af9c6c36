"""Transition shim: the download layer now lives in ``_config``, ``_files``, ``_fetch`` and
``_transfers``. Kept only so that existing imports (``from ._download import ...``) resolve;
remove it once nothing imports it."""

from __future__ import annotations

from ._config import DownloadOptions
from ._files import OnExists, SavedImage
from ._transfers import Transfers

__all__ = ["DownloadOptions", "OnExists", "SavedImage", "Transfers"]
