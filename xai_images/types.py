"""Type aliases for annotating code that calls xai-images.

- ``ImageInput``: what an edit accepts as an input image: a URL or data URI (``str``), a local
  path (``str`` or ``os.PathLike``), ``bytes``/``bytearray``/``memoryview``, a binary file
  object, or a `xai_images.FileId`.
- ``OnExists``: what saving does when the target file exists: ``"overwrite"``, ``"skip"``
  (keep an identical file) or ``"fail"``.
- ``ImageModel``, ``PriceTier``: what ``client.images.models`` answers (a model and one row of
  its price table).
- ``GenerateFields``, ``EditFields``: the keyword arguments of ``client.images.generate`` and
  ``edit`` (and their deferred forms), as typed dicts: ``**fields: Unpack[GenerateFields]``.
- ``BulkOptions``: the keyword arguments of ``client.bulk`` besides ``output_dir``.
- ``Estimate``, ``EstimateRow``, ``ItemPrice``: what ``client.images.estimate`` and
  ``xai_images.bulk.estimate`` answer (see ``docs/cost.md``).
"""

from ._api._image_models import ImageModel, PriceTier
from ._api._images import EditFields, GenerateFields
from ._api._inputs import ImageInput
from ._api._pricing import Estimate, EstimateRow, ItemPrice
from ._bulk._client import BulkOptions
from ._public import publish
from ._results._files import OnExists

__all__ = [
    "BulkOptions",
    "EditFields",
    "Estimate",
    "EstimateRow",
    "GenerateFields",
    "ImageInput",
    "ImageModel",
    "ItemPrice",
    "OnExists",
    "PriceTier",
]

publish(__name__, globals())
