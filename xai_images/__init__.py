"""xai-images: an async-first SDK for the xAI image API."""

from ._errors import *  # noqa: F403  (replaced by explicit re-exports as modules land)
from ._errors import __all__ as _errors_all

__version__ = "0.1.0"
__all__ = sorted(_errors_all)
