"""Bulk jobs: run many requests as one resumable job, and read what it left behind.

Start a job with ``client.batch(...)`` (it returns a `BatchRun`); iterate it for one
`Outcome` per item. A JSONL job file is read with `load_jobs` (which raises `JobFileError`
listing every bad line when told to stop on them); the job's manifest
(one `ManifestRecord` per finished item) with `load_manifest`; its gallery page is
written by `write_gallery`. `Progress` and `ProgressEvent` are what
``on_event`` callbacks receive.

Through xAI's Batch API (``client.batch(..., via="batch-api")``, or ``via=BatchAPI(...)`` with
:class:`BatchAPI` options) the job is a
:class:`RemoteBatchRun` with :class:`RemoteProgress`; ``client.batches`` answers with
:class:`Batch`, :class:`BatchRequestState`, :class:`ResultsPage` of :class:`BatchResult`, and
``client.files`` with :class:`FileObject`; :class:`BatchLimits` sets the local pacing.
"""

from ._api._batch_models import (
    Batch,
    BatchRequestState,
    BatchResult,
    BatchState,
    FileObject,
    ResultsPage,
)
from ._api._batches import BatchLimits
from ._bulk._batch import BatchRun, Outcome
from ._bulk._batch_remote import BatchAPI, RemoteBatchRun
from ._bulk._gallery import write_gallery
from ._bulk._jobs import InvalidJob, JobFileError, load_jobs
from ._bulk._manifest import FileRecord, ManifestRecord, load_manifest
from ._bulk._progress import Progress, ProgressEvent
from ._bulk._remote_state import RemoteProgress
from ._public import publish

__all__ = [
    "Batch",
    "BatchAPI",
    "BatchLimits",
    "BatchRequestState",
    "BatchResult",
    "BatchRun",
    "BatchState",
    "FileObject",
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
    "load_jobs",
    "load_manifest",
    "write_gallery",
]

publish(__name__, globals())
