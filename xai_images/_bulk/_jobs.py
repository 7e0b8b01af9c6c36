"""Bulk-job lines to requests: the JSONL job-file reader and item ids.

A job line is a JSON object whose keys are the fields of `GenerateRequest` (or, with an
``image`` or ``images`` key, of `EditRequest`), read from the fields themselves: a field
added in ``_requests.py`` is accepted here without a change.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from pathlib import Path
from typing import Any, Literal

import attrs

from .._api._inputs import FileId, ImageInput
from .._api._requests import EditRequest, GenerateRequest, Request, field_spec
from .._api._requests import derive_id as derive_id
from .._errors import ValidationError

__all__ = [
    "InvalidJob",
    "Job",
    "JobFileError",
    "Source",
    "check_job_file",
    "count_items",
    "count_jobs",
    "derive_id",
    "iter_jobs",
    "iter_source",
    "load_jobs",
    "parse_job",
]

# Keys a job line may carry: the fields of either request, except the bookkeeping that the
# reader sets itself (the line number, the directory relative paths resolve against).
_SET_BY_READER = frozenset({"line", "base_dir"})
_EDIT_FIELDS = {f.name: f for f in attrs.fields(EditRequest) if f.name not in _SET_BY_READER}
_INPUT_KEYS = frozenset(n for n, f in _EDIT_FIELDS.items() if field_spec(f).role == "input")
_EXTRA_KEY = next(n for n, f in _EDIT_FIELDS.items() if field_spec(f).role == "extra")
# Everything that reading one line can raise besides ValidationError: invalid JSON or UTF-8
# (ValueError, including UnicodeDecodeError), nesting deeper than the parser's recursion limit
# (RecursionError), an integer literal longer than sys.get_int_max_str_digits() (ValueError) or a
# number out of a conversion's range (OverflowError), a value of the wrong type (TypeError).
# Caught per line, so one bad line becomes an InvalidJob and the rest of the job runs.
_UNPARSABLE = (ValueError, TypeError, RecursionError, OverflowError)


@attrs.frozen
class InvalidJob:
    """A job-file line (or an item) that could not be turned into a request.

    Attributes:
        line: its line number in the job file (``None`` for items not from a file).
        error: what is wrong, naming the line and field.
        text: the start of the offending line.
    """

    line: int | None
    error: ValidationError
    text: str = ""


SHOWN_BAD_LINES = 20
"""At most this many bad lines are listed in a `JobFileError`'s message; the rest are counted."""


class JobFileError(ValidationError):
    """A job file has bad lines (``load_jobs(..., on_error="stop")``); nothing was sent.

    Its ``field``, ``value`` and ``limit`` are those of the first bad line; its message lists
    the first 20 bad lines and counts the others.

    Attributes:
        invalid: every bad line, in file order.
    """

    def __init__(self, invalid: Sequence[InvalidJob]) -> None:
        first = invalid[0].error
        super().__init__(first.field, first.value, first.limit)
        self.invalid = tuple(invalid)
        shown = [f"  {job.error}" for job in self.invalid[:SHOWN_BAD_LINES]]
        rest = len(self.invalid) - len(shown)
        if rest > 0:
            shown.append(f"  ... and {rest} more bad line(s)")
        noun = "bad line" if len(self.invalid) == 1 else "bad lines"
        self.args = (f"{len(self.invalid)} {noun}, nothing was sent:\n" + "\n".join(shown),)


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, _EDIT_FIELDS, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _job_input(value: Any, name: str) -> ImageInput:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, item),) = value.items()
        if key == "url" and isinstance(item, str):
            return item
        if key == "file_id" and isinstance(item, str):
            return FileId(item)
        if key == "path" and isinstance(item, str):
            return Path(item)
    raise ValidationError(
        name, value, 'a URL, a data URI, a path, {"url": ...}, {"file_id": ...} or {"path": ...}'
    )


def _field_value(name: str, value: Any) -> Any:
    """A job line's JSON value as the request field's value (edit inputs become inputs)."""
    if name not in _INPUT_KEYS:
        return value
    if field_spec(_EDIT_FIELDS[name]).many:
        if not isinstance(value, list):
            raise ValidationError(name, value, "a list")
        return [_job_input(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return _job_input(value, name)


def parse_job(
    data: Mapping[str, Any], *, line: int | None = None, base_dir: Path | None = None
) -> Request:
    """Turn one job object (a parsed JSONL line) into a request.

    An ``image`` or ``images`` key makes an `EditRequest`; relative input paths resolve
    against ``base_dir``. Unknown keys are refused (a typo would otherwise be ignored silently:
    put fields this SDK does not know in the request's mapping of extra fields).

    Raises:
        ValidationError: an unknown key, a missing prompt, or a bad value (never another
            exception, whatever the object holds); the field is prefixed with ``line N:`` when
            ``line`` is given.
    """
    where = f"line {line}: " if line is not None else ""
    try:
        unknown = sorted(set(data) - set(_EDIT_FIELDS))
        if unknown:
            hint = _did_you_mean(unknown[0])
            raise ValidationError(
                unknown[0],
                data[unknown[0]],
                f"a known field ({hint}put fields this SDK does not know in {_EXTRA_KEY})",
            )
        if "prompt" not in data:
            raise ValidationError("prompt", None, "given")
        # A null prompt stays, so that it fails as a prompt rather than as a missing argument.
        values = {k: _field_value(k, v) for k, v in data.items() if v is not None or k == "prompt"}
        request: Request
        if _INPUT_KEYS & values.keys():
            request = EditRequest(**values, base_dir=base_dir, line=line)
        else:
            request = GenerateRequest(**values, line=line)
        request.validate()
    except ValidationError as exc:
        if not where:
            raise
        raise ValidationError(f"{where}{exc.field}", exc.value, exc.limit) from None
    except _UNPARSABLE as exc:  # e.g. a non-string prompt reaching attrs
        raise ValidationError(
            f"{where}fields", "<job object>", f"valid ({type(exc).__name__}: {exc})"
        ) from None
    return request


def _why(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deep"
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."


def load_jobs(
    path: str | os.PathLike[str], *, on_error: Literal["report", "stop"] = "report"
) -> list[Request | InvalidJob]:
    """Read a JSONL job file: one JSON object per line (blank lines are ignored).

    Each object has ``prompt`` and optionally any other field of `GenerateRequest`
    (``id``, ``model``, ``n``, ...); an ``image`` or ``images`` key makes it an edit (relative
    paths resolve against the job file's directory). Every line is validated now, before
    anything is sent.

    Args:
        on_error: ``"report"`` turns a bad line into an `InvalidJob` (the batch reports
            it as a failed item with its line number and runs the rest); ``"stop"`` reads the
            whole file, then raises `JobFileError` listing every bad line.

    A line that is not UTF-8, not JSON, not an object, nested too deep for the parser, has a
    number too large to convert, or fails a field's check never stops the reading: it becomes an
    `InvalidJob` with its line number (or, with ``on_error="stop"``, the error).

    Raises:
        JobFileError: (``on_error="stop"``) every bad line, with its number (a
            `ValidationError` whose field is the first one's).
        OSError: the file cannot be read.
    """
    jobs = list(iter_jobs(path))
    if on_error == "stop":
        invalid = [job for job in jobs if isinstance(job, InvalidJob)]
        if invalid:
            raise JobFileError(invalid)
    return jobs


def check_job_file(
    path: str | os.PathLike[str], *, on_error: Literal["report", "stop"] = "report"
) -> None:
    """Check a job file before a run reads it lazily: that it can be read and, with
    ``on_error="stop"``, that no line is bad (keeping only the bad ones: bounded memory).

    Raises:
        JobFileError: (``on_error="stop"``) every bad line.
        OSError: the file cannot be read.
    """
    if on_error == "stop":
        invalid = [job for job in iter_jobs(path) if isinstance(job, InvalidJob)]
        if invalid:
            raise JobFileError(invalid)
    else:
        with open(path, "rb"):
            pass


def iter_jobs(path: str | os.PathLike[str]) -> Iterator[Request | InvalidJob]:
    """`load_jobs` one line at a time (a bad line is an `InvalidJob`): memory stays that of
    one line, whatever the file's size.

    Blocking (it reads the file): a bulk run reads it in a worker thread, a few lines at a time.
    """
    source = Path(path)
    base_dir = source.resolve().parent
    with open(source, "rb") as fh:
        # Lines end at \n, \r or \r\n (as bytes.splitlines() and text mode split them), so
        # line numbers do not depend on the platform that wrote the file.
        for number, raw in enumerate(_lines(fh), start=1):
            job = _read_line(raw, number, base_dir)
            if job is not None:
                yield job


def _lines(fh: Any) -> Iterator[bytes]:
    """The lines of a binary file split like ``bytes.splitlines()`` on \n, \r and \r\n."""
    for chunk in fh:  # split at \n by the file object
        if b"\r" not in chunk:
            yield chunk.rstrip(b"\n")
            continue
        # A lone \r also ends a line; a \r\n pair is one ending (the \n is the file's split).
        body = chunk.rstrip(b"\n")
        parts = body.split(b"\r")
        if body.endswith(b"\r"):
            parts.pop()
        yield from parts


def _read_line(raw: bytes, number: int, base_dir: Path) -> Request | InvalidJob | None:
    """One job line as a request, an `InvalidJob`, or ``None`` for a blank line."""
    undecodable: UnicodeDecodeError | None = None
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="replace").strip()
        undecodable = exc
    if not text:
        return None
    try:
        if undecodable is not None:
            bad = raw[undecodable.start : undecodable.start + 1]
            raise ValidationError(
                f"line {number}",
                text[:60],
                f"UTF-8 text (byte 0x{bad.hex()} at offset {undecodable.start} is not)",
            )
        try:
            data = json.loads(text)
        except _UNPARSABLE as exc:
            raise ValidationError(
                f"line {number}", text[:60], f"a JSON object (invalid JSON: {_why(exc)})"
            ) from None
        if not isinstance(data, dict):
            raise ValidationError(f"line {number}", text[:60], "a JSON object")
        return parse_job(data, line=number, base_dir=base_dir)
    except ValidationError as exc:
        return InvalidJob(number, exc, text[:200])


Job = Request | InvalidJob | Mapping[str, Any]
"""One item of a bulk job's source: a request, an unreadable line, or a dict like a job line."""
Source = str | os.PathLike[str] | Iterable[Job] | AsyncIterable[Job]
"""A bulk job's source: the path of a JSONL job file, or an (async) iterable of jobs."""
_READ_AHEAD = 256  # job-file lines read per trip to the worker thread


async def iter_source(source: Source) -> AsyncIterator[Job]:
    """The jobs of a bulk job's source, read lazily: a job file a few hundred lines per trip
    to a worker thread (memory stays that of those lines), an iterable or async iterable as
    it yields."""
    if isinstance(source, (str, os.PathLike)):
        lines: Iterator[Request | InvalidJob] = iter_jobs(source)
        try:
            while batch := await asyncio.to_thread(_take, lines, _READ_AHEAD):
                for job in batch:
                    yield job
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                await asyncio.to_thread(close)
    elif isinstance(source, AsyncIterable):
        async for job in source:
            yield job
    else:
        for job in source:
            yield job


def _take(lines: Iterator[Any], count: int) -> list[Any]:
    out = []
    for job in lines:
        out.append(job)
        if len(out) >= count:
            break
    return out


def count_jobs(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> int:
    """How many items a job file holds: its lines that are not blank, counted chunk by chunk
    (memory bounded by ``chunk_size``, whatever the file's size). Call it in a thread.

    Raises:
        OSError: the file cannot be read.
    """
    count = 0
    blank = True  # the current line holds nothing but whitespace so far
    first = True
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            if first:
                chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False  # a UTF-8 BOM
            # bytes.splitlines() splits where load_jobs does (\n, \r, \r\n).
            for line in chunk.splitlines(keepends=True):
                if blank and line.strip():
                    blank = False
                if line.endswith((b"\n", b"\r")):
                    count += 0 if blank else 1
                    blank = True
    return count + (0 if blank else 1)


def count_items(source: object) -> int | None:
    """How many items a bulk job's source holds, found cheaply before the run: a job file's
    items are counted (`count_jobs`: call this in a thread), a list's are its length; ``None``
    for an iterator or an async source, whose end is known only when it comes."""
    if isinstance(source, (str, os.PathLike)):
        return count_jobs(source)
    if isinstance(source, Sized):
        return len(source)
    return None
