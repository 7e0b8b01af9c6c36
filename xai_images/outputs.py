"""Output targets: where saved images end up.

``image.save``, ``response.save`` and ``save_all`` accept a directory path, a ``file://`` URL,
or any object implementing `Output`, so images can be stored somewhere else (a database, a
cache, an object store) without touching the SDK. An `Output` names keys (`Output.key_for`),
opens one `Upload` per image, and the SDK streams the bytes into it chunk by chunk, then commits
it (or aborts it on any failure, including cancellation). `Stored` is what a commit reports;
``SavedImage.location`` and ``SavedImage.key`` come from it.

`StoreOutput` is the object-store implementation (``s3://``, ``gs://``, ``az://``,
``memory://``; the ``storage`` extra): a store URL passed as a target becomes one, or build one
around an obstore store you configured. `StoreUploads` and `UploadedImage` are what
``client.images.send_to_store`` (signed uploads by xAI) returns.
"""

from ._api._uploads import StoreUploads, UploadedImage
from ._public import publish
from ._results._objstore import StoreOutput
from ._results._output import Output, Stored, Upload

__all__ = ["Output", "StoreOutput", "StoreUploads", "Stored", "Upload", "UploadedImage"]

publish(__name__, globals())
