"""xai-images: an async-first SDK for the xAI image API.

Start with ``async with xai_images.AsyncClient() as client:`` and ``client.images.generate()``;
the guide pages (Client, Saving images, Bulk jobs, Errors and retries) show how the names below
fit together. Bulk-job and manifest names are in
`xai_images.bulk`, event hooks in `xai_images.hooks`, type aliases in
`xai_images.types`.
"""

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
from ._config import DownloadOptions, RetryPolicy, Timeout
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchTimeoutError,
    ClientClosedError,
    ConfigurationError,
    DeferredError,
    DownloadError,
    DownloadStalledError,
    FileCollisionError,
    ImageBlockedError,
    ImageExpiredError,
    IntegrityError,
    InternalServerError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    SaveError,
    SharedLimitError,
    StoreError,
    StoreUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    UploadFailedError,
    ValidationError,
    XAIImagesError,
)
from ._public import publish
from ._results._files import SavedImage
from ._sync._client import Client
from ._version import __version__ as __version__
from ._wire._ratelimit import RateLimiter
from ._wire._shared_limit import SharedRateLimiter

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchRequestError",
    "BatchTimeoutError",
    "Client",
    "ClientClosedError",
    "ConfigurationError",
    "DeferredError",
    "DeferredRequest",
    "DeferredStatus",
    "DownloadError",
    "DownloadOptions",
    "DownloadStalledError",
    "EditRequest",
    "FileCollisionError",
    "FileId",
    "FileOutput",
    "GenerateRequest",
    "GeneratedImage",
    "ImageBlockedError",
    "ImageExpiredError",
    "ImagesResponse",
    "InputTokensDetails",
    "IntegrityError",
    "InternalServerError",
    "NotFoundError",
    "OutcomeUnknownError",
    "OutputTokensDetails",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimiter",
    "RetryPolicy",
    "SaveError",
    "SavedImage",
    "SharedLimitError",
    "SharedRateLimiter",
    "StoreError",
    "StoreUnavailableError",
    "Timeout",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "UploadFailedError",
    "Usage",
    "ValidationError",
    "XAIImagesError",
]

publish(__name__, globals())

# Imported last: the public submodules re-export names from the private modules above.
from . import bulk as bulk  # noqa: E402
from . import hooks as hooks  # noqa: E402
from . import types as types  # noqa: E402
