"""Bulk jobs: run many requests as one resumable job, and read what it left behind.

Start a job with ``client.bulk(...)`` (it returns a `BatchRun`); iterate it for one
`Outcome` per item. A JSONL job file is read with `load_jobs` (which raises `JobFileError`
listing every bad line when told to stop on them); the job's manifest
(one `ManifestRecord` per finished item) with `load_manifest`; its gallery page is
written by `write_gallery`. `estimate` prices a job before it runs
(see ``docs/cost.md``). `Progress` and `ProgressEvent` are what
``on_event`` callbacks receive.

Through xAI's Batch API (``client.bulk(..., via="batch-api")``, or ``via=BatchAPI(...)`` with
:class:`BatchAPI` options) the job is a
:class:`RemoteBatchRun` with :class:`RemoteProgress`; ``client.batches`` answers with
:class:`Batch`, :class:`BatchRequestState`, :class:`ResultsPage` of :class:`BatchResult`, and
``client.files`` with :class:`FileObject`, :class:`DeletedFile` and :class:`FilePublicUrl`;
:class:`BatchLimits` sets the local pacing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._api._batch_models import (
    Batch,
    BatchRequestState,
    BatchResult,
    BatchState,
    FileObject,
    ResultsPage,
)
from ._api._batches import BatchLimits
from ._api._files import DeletedFile, FilePublicUrl
from ._bulk._batchapi_state import RemoteProgress
from ._bulk._estimate import estimate_job as estimate
from ._bulk._gallery import write_gallery
from ._bulk._jobs import InvalidJob, JobFileError, load_jobs
from ._bulk._manifest import FileRecord, ManifestRecord, load_manifest
from ._bulk._outcome import Outcome
from ._bulk._progress import Progress, ProgressEvent
from ._bulk._source_realtime import BatchRun
from ._public import publish

__all__ = [
    "Batch",
    "BatchAPI",
    "BatchLimits",
    "BatchRequestState",
    "BatchResult",
    "BatchRun",
    "BatchState",
    "DeletedFile",
    "FileObject",
    "FilePublicUrl",
    "FileRecord",
    "InvalidJob",
    "JobFileError",
    "ManifestRecord",
    "Outcome",
    "Progress",
    "ProgressEvent",
    "RemoteBatchRun",
    "RemoteProgress",
    "ResultsPage",
    "estimate",
    "load_jobs",
    "load_manifest",
    "write_gallery",
]

if TYPE_CHECKING:
    from ._bulk._source_batchapi import BatchAPI, RemoteBatchRun

# The Batch-API engine is imported when one of its names is first used, not with the package.
_LAZY = {"BatchAPI": "._bulk._source_batchapi", "RemoteBatchRun": "._bulk._source_batchapi"}

publish(__name__, {**globals(), "__all__": [name for name in __all__ if name not in _LAZY]})


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], "xai_images"), name)
    publish(__name__, {"__all__": [name], name: value})
    globals()[name] = value
    return value
