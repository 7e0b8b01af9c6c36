"""Bulk jobs: run many requests as one resumable job, and read what it left behind.

Start a job with ``client.batch(...)`` (it returns a `BatchRun`); iterate it for one
`Outcome` per item. A JSONL job file is read with `load_jobs`; the job's manifest
(one `ManifestRecord` per finished item) with `load_manifest`; its gallery page is
written by `write_gallery`. `Progress` and `ProgressEvent` are what
``on_event`` callbacks receive.
"""

from ._batch import BatchRun, Outcome
from ._gallery import write_gallery
from ._jobs import InvalidJob, load_jobs
from ._manifest import FileRecord, ManifestRecord, load_manifest
from ._progress import Progress, ProgressEvent
from ._public import publish

__all__ = [
    "BatchRun",
    "FileRecord",
    "InvalidJob",
    "ManifestRecord",
    "Outcome",
    "Progress",
    "ProgressEvent",
    "load_jobs",
    "load_manifest",
    "write_gallery",
]

publish(__name__, globals())
