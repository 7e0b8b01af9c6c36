"""Naming the items of a bulk job: each job validated and given its id (its own, unique within
the job, or one derived from its content, ``-2``, ``-3``, ... for repeats); the ids given so far
kept as 64-bit hashes (`IdSet`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._api._requests import EditRequest, GenerateRequest, Request
from .._errors import ValidationError
from ._jobs import InvalidJob, derive_id, parse_job
from ._jobstate import IdSet
from ._outcome import Outcome

__all__ = ["name_job"]


class _Names:
    """The ids a run has given (compact), and the repeat counts of derived ids."""

    def __init__(self) -> None:
        self.ids = IdSet()
        self.repeats: dict[str, int] = {}  # only bases seen more than once


def name_job(job: Any, names: _Names, number: int) -> tuple[str, Request] | Outcome:
    """Validate a job and name it, or return its failed outcome.

    The id is the job's own (unique within the job) or derived from its content, the same
    request again getting ``-2``, ``-3``, ... in job order; it is added to ``names``.
    ``number`` (the job's position) names a job that has neither id nor line.
    """
    if isinstance(job, Mapping):
        try:
            job = parse_job(job)
        except ValidationError as exc:
            job = InvalidJob(None, exc)
    if isinstance(job, InvalidJob):
        name = f"line-{job.line}" if job.line is not None else f"item-{number}"
        return Outcome(name, "failed", error=job.error, line=job.line)
    if not isinstance(job, (GenerateRequest, EditRequest)):
        error = ValidationError("request", job, "a GenerateRequest, EditRequest or dict")
        return Outcome(f"item-{number}", "failed", error=error)
    try:
        job.validate()
    except ValidationError as exc:
        return Outcome(job.id or f"item-{number}", "failed", job, error=exc, line=job.line)
    if job.id is not None:
        item_id = job.id
        if item_id in names.ids:
            error = ValidationError("id", item_id, "unique within the job")
            return Outcome(item_id, "failed", job, error=error, line=job.line)
    else:
        base = derive_id(job)
        # The same request twice (asking for more variety) gets -2, -3, ... in job order.
        count = names.repeats.get(base, 1 if base in names.ids else 0) + 1
        if count > 1:
            names.repeats[base] = count
        item_id = base if count == 1 else f"{base}-{count}"
    names.ids.add(item_id)
    return item_id, job
