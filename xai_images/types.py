"""Type aliases for annotating code that calls xai-images.

- ``ImageInput``: what an edit accepts as an input image: a URL or data URI (``str``), a local
  path (``str`` or ``os.PathLike``), ``bytes``/``bytearray``/``memoryview``, a binary file
  object, or a `xai_images.FileId`.
- ``OnExists``: what saving does when the target file exists: ``"overwrite"``, ``"skip"``
  (keep an identical file) or ``"fail"``.
"""

from ._api._inputs import ImageInput
from ._results._files import OnExists

__all__ = ["ImageInput", "OnExists"]
