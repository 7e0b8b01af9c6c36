"""xai-images: an async-first SDK for the xAI image API.

Start with ``async with xai_images.AsyncClient() as client:`` and ``client.images.generate()``;
see the README for saving, bulk jobs, errors and retries.
"""

from ._batch import BatchRun, EditRequest, GenerateRequest, InvalidJob, Outcome, load_jobs
from ._client import AsyncClient, Timeout
from ._download import DownloadOptions, OnExists, SavedImage
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
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
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    ValidationError,
    XAIImagesError,
)
from ._gallery import write_gallery
from ._images import Images
from ._inputs import FileId, ImageInput
from ._manifest import FileRecord, ManifestRecord, load_manifest
from ._models import (
    DeferredRequest,
    DeferredStatus,
    GeneratedImage,
    ImagesResponse,
    Usage,
)
from ._progress import Progress, ProgressEvent
from ._ratelimit import RateLimiter
from ._retry import RetryPolicy
from ._sync import Client

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchRun",
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
    "FileRecord",
    "GenerateRequest",
    "GeneratedImage",
    "ImageBlockedError",
    "ImageExpiredError",
    "ImageInput",
    "Images",
    "ImagesResponse",
    "IntegrityError",
    "InternalServerError",
    "InvalidJob",
    "ManifestRecord",
    "NotFoundError",
    "OnExists",
    "Outcome",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "Progress",
    "ProgressEvent",
    "RateLimitError",
    "RateLimiter",
    "RetryPolicy",
    "SaveError",
    "SavedImage",
    "Timeout",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "Usage",
    "ValidationError",
    "XAIImagesError",
    "load_jobs",
    "load_manifest",
    "write_gallery",
]
