"""xai-images: an async-first SDK for the xAI image API.

Start with ``async with xai_images.AsyncClient() as client:`` and ``client.images.generate()``;
the guide pages (Client, Saving images, Bulk jobs, Errors and retries) show how the names below
fit together. Bulk-job and manifest names are in
`xai_images.bulk`, event hooks in `xai_images.hooks`, type aliases in
`xai_images.types`.
"""

import importlib
from typing import TYPE_CHECKING, Any

from . import _errors
from ._config import DownloadOptions, RetryPolicy, Timeout
from ._errors import *  # noqa: F403 (the exceptions: `_errors.__all__`, added below)
from ._public import publish
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from . import bulk as bulk
    from . import hooks as hooks
    from . import types as types
    from ._api._inputs import FileId
    from ._api._models import (
        DeferredRequest,
        DeferredStatus,
        FileOutput,
        GeneratedImage,
        ImagesResponse,
    )
    from ._api._requests import EditRequest, GenerateRequest
    from ._api._usage import InputTokensDetails, OutputTokensDetails, Usage
    from ._bulk._batchapi_state import BatchRequestError
    from ._bulk._client import AsyncClient
    from ._results._files import SavedImage
    from ._sync._client import Client
    from ._wire._ratelimit import RateLimiter
    from ._wire._shared_limit import SharedRateLimiter

__all__ = [
    "AsyncClient",
    "BatchRequestError",
    "Client",
    "DeferredRequest",
    "DeferredStatus",
    "DownloadOptions",
    "EditRequest",
    "FileId",
    "FileOutput",
    "GenerateRequest",
    "GeneratedImage",
    "ImagesResponse",
    "InputTokensDetails",
    "OutputTokensDetails",
    "RateLimiter",
    "RetryPolicy",
    "SavedImage",
    "SharedRateLimiter",
    "Timeout",
    "Usage",
]
# The exceptions, listed once in `_errors`.
__all__ += _errors.__all__
__all__.sort()

# Imported when first used, not with the package: the client, the models and the bulk engine
# pull in aiohttp, cattrs and anyio (a few hundred ms), which `import xai_images` alone (a
# CLI's --help, a worker that only catches our errors) should not pay. See benchmarks/README.md.
_LAZY = {
    "AsyncClient": "._bulk._client",
    "BatchRequestError": "._bulk._batchapi_state",
    "Client": "._sync._client",
    "DeferredRequest": "._api._models",
    "DeferredStatus": "._api._models",
    "EditRequest": "._api._requests",
    "FileId": "._api._inputs",
    "FileOutput": "._api._models",
    "GenerateRequest": "._api._requests",
    "GeneratedImage": "._api._models",
    "ImagesResponse": "._api._models",
    "InputTokensDetails": "._api._usage",
    "OutputTokensDetails": "._api._usage",
    "RateLimiter": "._wire._ratelimit",
    "SavedImage": "._results._files",
    "SharedRateLimiter": "._wire._shared_limit",
    "Usage": "._api._usage",
}
# The public submodules, also imported on first use (``xai_images.bulk`` works unchanged).
_SUBMODULES = frozenset({"bulk", "hooks", "types"})

publish(__name__, {**globals(), "__all__": [name for name in __all__ if name not in _LAZY]})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    publish(__name__, {"__all__": [name], name: value})
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
