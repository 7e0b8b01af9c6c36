"""The bulk engine: many generate/edit requests in, one outcome per item out, resumable.

``run_batch(client, requests, output_dir=...)`` (also ``client.batch(...)``) runs every request
with at most ``concurrency`` API requests in flight (the client's rate limiter spaces their
starts), saves each image as ``{id}-{index}.{ext}``, appends a manifest line per finished item
and yields an :class:`Outcome` as each item finishes. One item failing never stops the others.

Resuming: items whose manifest record says ``ok`` and whose files are intact are skipped. Items
that ``failed`` or were ``blocked`` are run again only with ``retry_failed=True``; a failed item
whose images were already generated (billed) is then downloaded again from its recorded URLs
instead of being generated again, while a blocked one is generated again. Items whose outcome
is ``unknown`` (the request was sent, the answer was lost, it may have been billed) are resent
only with ``resend_unknown=True``; the same switch allows generating again a billed item whose
image URLs expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._config import int_at_least
from ._errors import (
    APIConnectionError,
    APIError,
    DownloadError,
    ImageBlockedError,
    ImageExpiredError,
    OutcomeUnknownError,
    ValidationError,
    XAIImagesError,
)
from ._inputs import FileId, resolve_image, resolve_images
from ._manifest import (
    FileRecord,
    ItemStatus,
    ManifestRecord,
    ManifestWriter,
    PendingImage,
    load_manifest,
)
from ._models import GeneratedImage, ImagesResponse, parse_images_response
from ._progress import ProgressEvent
from ._records import interrupted_record, item_record
from ._resume import ResumeOptions, decide_resume
from ._tally import Item, Tally
from ._validation import PENDING_INPUT, check_edit_inputs, edit_body, generate_body

if TYPE_CHECKING:
    from ._client import AsyncClient
    from ._files import OnExists, SavedImage

__all__ = [
    "BatchRun",
    "EditRequest",
    "GenerateRequest",
    "InvalidJob",
    "Outcome",
    "derive_id",
    "load_jobs",
    "parse_job",
    "run_batch",
]

logger = logging.getLogger("xai_images")

_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_COMMON_KEYS = (
    "model",
    "n",
    "quality",
    "response_format",
    "aspect_ratio",
    "resolution",
    "user",
    "extra_body",
)
_JOB_KEYS = frozenset({"prompt", "id", "image", "images", *_COMMON_KEYS})

EditInput = str | os.PathLike[str] | bytes | FileId
"""An edit input a batch accepts: a URL, a data URI, a local path, image bytes or a
:class:`FileId` (file objects are not accepted: a resumable job must be able to read it again)."""


def _opt_tuple(value: Sequence[EditInput] | None) -> tuple[EditInput, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen
class GenerateRequest:
    """One text-to-image request of a bulk job.

    The fields are those of ``client.images.generate`` (only the ones set are sent).

    Attributes:
        id: the item's id: letters, digits, ``.``, ``_``, ``-`` (up to 100). When ``None`` it is
            derived from the request's content (see :func:`derive_id`). File names derive from
            it: ``{id}-{index}.{ext}``.
        line: the line of the JSONL job file it came from (set by :func:`load_jobs`).
    """

    prompt: str
    id: str | None = attrs.field(default=None, kw_only=True)
    model: str | None = attrs.field(default=None, kw_only=True)
    n: int | None = attrs.field(default=None, kw_only=True)
    quality: str | None = attrs.field(default=None, kw_only=True)
    response_format: str | None = attrs.field(default=None, kw_only=True)
    aspect_ratio: str | None = attrs.field(default=None, kw_only=True)
    resolution: str | None = attrs.field(default=None, kw_only=True)
    user: str | None = attrs.field(default=None, kw_only=True)
    extra_body: Mapping[str, Any] | None = attrs.field(default=None, kw_only=True)
    line: int | None = attrs.field(default=None, kw_only=True, eq=False)

    kind = "generate"

    def options(self) -> dict[str, Any]:
        """The API fields that are set, except ``prompt``."""
        return {k: getattr(self, k) for k in _COMMON_KEYS if getattr(self, k) is not None}

    def to_json(self) -> dict[str, Any]:
        """The request as recorded in the manifest (and hashed for its id)."""
        return {"prompt": self.prompt, **_jsonable(self.options())}

    def validate(self) -> None:
        """Check every field as the client would, without sending anything.

        Raises:
            ValidationError: naming the field at fault.
        """
        _check_id(self.id)
        generate_body(self.prompt, **self.options())


@attrs.frozen
class EditRequest:
    """One edit of a bulk job: ``image`` (one input) or ``images`` (several), not both.

    The other fields are those of ``client.images.edit``.

    Attributes:
        image, images: URLs, data URIs, local paths, image bytes or ``FileId`` values.
        base_dir: relative local paths resolve against it (:func:`load_jobs` sets the job
            file's directory); ``None`` means the current directory.
        id, line: as for :class:`GenerateRequest`.
    """

    prompt: str
    image: EditInput | None = attrs.field(default=None, kw_only=True)
    images: tuple[EditInput, ...] | None = attrs.field(
        default=None, kw_only=True, converter=_opt_tuple
    )
    id: str | None = attrs.field(default=None, kw_only=True)
    model: str | None = attrs.field(default=None, kw_only=True)
    n: int | None = attrs.field(default=None, kw_only=True)
    quality: str | None = attrs.field(default=None, kw_only=True)
    response_format: str | None = attrs.field(default=None, kw_only=True)
    aspect_ratio: str | None = attrs.field(default=None, kw_only=True)
    resolution: str | None = attrs.field(default=None, kw_only=True)
    user: str | None = attrs.field(default=None, kw_only=True)
    extra_body: Mapping[str, Any] | None = attrs.field(default=None, kw_only=True)
    base_dir: Path | None = attrs.field(default=None, kw_only=True, eq=False)
    line: int | None = attrs.field(default=None, kw_only=True, eq=False)

    kind = "edit"

    def options(self) -> dict[str, Any]:
        """The API fields that are set, except ``prompt`` and the inputs."""
        return {k: getattr(self, k) for k in _COMMON_KEYS if getattr(self, k) is not None}

    def to_json(self) -> dict[str, Any]:
        """The request as recorded in the manifest (inputs by reference, never their bytes)."""
        out: dict[str, Any] = {"prompt": self.prompt}
        if self.image is not None:
            out["image"] = _input_json(self.image)
        if self.images is not None:
            out["images"] = [_input_json(i) for i in self.images]
        out.update(_jsonable(self.options()))
        return out

    def validate(self) -> None:
        """Check every field and that local input files exist, without sending anything.

        Raises:
            ValidationError: naming the field at fault.
        """
        _check_id(self.id)
        check_edit_inputs(self.image, self.images)
        if self.image is not None:
            self._check_input("image", self.image)
        for i, item in enumerate(self.images or ()):
            self._check_input(f"images[{i}]", item)
        # The inputs are read only when sent; placeholders check the rest of the body now.
        edit_body(
            self.prompt,
            image=PENDING_INPUT if self.image is not None else None,
            images=[PENDING_INPUT] * len(self.images) if self.images is not None else None,
            **self.options(),
        )

    def _check_input(self, field: str, value: object) -> None:
        if isinstance(value, (FileId, bytes)):
            return
        if isinstance(value, str) and value[:8].lower().startswith(
            ("http://", "https://", "data:")
        ):
            return
        if isinstance(value, (str, os.PathLike)):
            path = self.resolve_path(value)
            if not path.is_file():
                raise ValidationError(field, str(value), f"an existing file (not found: {path})")
            return
        raise ValidationError(
            field, value, "a URL, a data URI, a local path, bytes or a FileId (no file objects)"
        )

    def resolve_path(self, value: str | os.PathLike[str]) -> Path:
        """A local input path, resolved against :attr:`base_dir` when relative."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def resolved_inputs(self) -> dict[str, Any]:
        """``image=`` / ``images=`` arguments for ``client.images.edit`` with paths resolved."""

        def one(value: EditInput) -> Any:
            if isinstance(value, str) and value[:8].lower().startswith(
                ("http://", "https://", "data:")
            ):
                return value
            if isinstance(value, (str, os.PathLike)):
                return self.resolve_path(value)
            return value

        if self.image is not None:
            return {"image": one(self.image)}
        return {"images": [one(v) for v in self.images or ()]}


Request = GenerateRequest | EditRequest


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


@attrs.frozen
class Outcome:
    """How one item of a bulk job ended.

    Attributes:
        id: the item's id (``line-N`` for a job-file line that could not be read).
        status: ``ok``, ``failed`` (safe to retry with ``retry_failed=True``), ``blocked``
            (moderation) or ``unknown`` (sent, answer lost: maybe billed; resent only with
            ``resend_unknown=True``).
        request: the request, or ``None`` when the item could not be read.
        files: the saved image files (absolute paths), for ``ok`` items.
        error: why it is not ``ok``.
        skipped: the item was settled by an earlier run (its manifest record) and not run.
        line: its line in the job file, when it came from one.
        record: the manifest record written for it (or the earlier one, when skipped).
    """

    id: str
    status: ItemStatus
    request: Request | None = None
    files: tuple[Path, ...] = ()
    error: BaseException | None = None
    skipped: bool = False
    line: int | None = None
    record: ManifestRecord | None = attrs.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """``True`` when every image of the item is saved."""
        return self.status == "ok"


def _check_id(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise ValidationError(
            "id",
            value,
            "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it names the files)",
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _input_json(value: object) -> Any:
    if isinstance(value, FileId):
        return {"file_id": value.id}
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(value, str) and value[:5].lower() == "data:":
        # Data URIs are big: recorded by hash, which still tells two inputs apart.
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        return {"data_uri_sha256": digest, "chars": len(value)}
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value if isinstance(value, str) else repr(value)


def derive_id(request: Request) -> str:
    """The id of a request without one: ``gen-`` or ``edit-`` and 12 hex digits of the SHA-256
    of its canonical JSON (same request, same id, in any run)."""
    canonical = json.dumps(
        {"kind": request.kind, **request.to_json()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    prefix = "gen" if request.kind == "generate" else "edit"
    return f"{prefix}-{hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:12]}"


def _job_input(value: Any, field: str) -> EditInput:
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
        field, value, 'a URL, a data URI, a path, {"url": ...}, {"file_id": ...} or {"path": ...}'
    )


def parse_job(
    data: Mapping[str, Any], *, line: int | None = None, base_dir: Path | None = None
) -> Request:
    """Turn one job object (a parsed JSONL line) into a request.

    An ``image`` or ``images`` key makes an :class:`EditRequest`; relative input paths resolve
    against ``base_dir``. Unknown keys are refused (a typo would otherwise be ignored silently:
    put fields this SDK does not know in ``extra_body``).

    Raises:
        ValidationError: an unknown key, a missing prompt, or a bad value; the field is
            prefixed with ``line N:`` when ``line`` is given.
    """
    where = f"line {line}: " if line is not None else ""
    try:
        unknown = sorted(set(data) - _JOB_KEYS)
        if unknown:
            raise ValidationError(
                unknown[0], data[unknown[0]], "a known field (put others in extra_body)"
            )
        if "prompt" not in data:
            raise ValidationError("prompt", None, "given")
        common: dict[str, Any] = {k: data[k] for k in _COMMON_KEYS if data.get(k) is not None}
        if data.get("id") is not None:
            common["id"] = data["id"]
        request: Request
        if data.get("image") is not None or data.get("images") is not None:
            images = data.get("images")
            if images is not None and not isinstance(images, list):
                raise ValidationError("images", images, "a list")
            request = EditRequest(
                data["prompt"],
                image=_job_input(data["image"], "image") if data.get("image") is not None else None,
                images=(
                    [_job_input(v, f"images[{i}]") for i, v in enumerate(images)]
                    if images is not None
                    else None
                ),
                base_dir=base_dir,
                line=line,
                **common,
            )
        else:
            request = GenerateRequest(data["prompt"], line=line, **common)
        request.validate()
    except ValidationError as exc:
        if not where:
            raise
        raise ValidationError(f"{where}{exc.field}", exc.value, exc.limit) from None
    except TypeError as exc:  # e.g. a non-string prompt reaching attrs
        raise ValidationError(f"{where}fields", dict(data), f"valid ({exc})") from None
    return request


def load_jobs(
    path: str | os.PathLike[str], *, on_error: Literal["report", "stop"] = "report"
) -> list[Request | InvalidJob]:
    """Read a JSONL job file: one JSON object per line (blank lines are ignored).

    Each object has ``prompt`` and optionally ``id``, ``model``, ``n``, ``quality``,
    ``response_format``, ``aspect_ratio``, ``resolution``, ``user``, ``extra_body``; an
    ``image`` or ``images`` key makes it an edit (relative paths resolve against the job file's
    directory). Every line is validated now, before anything is sent.

    Args:
        on_error: ``"report"`` turns a bad line into an :class:`InvalidJob` (the batch reports
            it as a failed item with its line number and runs the rest); ``"stop"`` raises.

    Raises:
        ValidationError: (``on_error="stop"``) the first bad line, with its number.
        OSError: the file cannot be read.
    """
    source = Path(path)
    base_dir = source.resolve().parent
    jobs: list[Request | InvalidJob] = []
    with open(source, "rb") as fh:
        content = fh.read()
    # Decoded line by line so that one non-UTF-8 line fails alone; bytes.splitlines() splits
    # on \n, \r and \r\n like text mode did, so line numbers are unchanged.
    for number, raw in enumerate(content.splitlines(), start=1):
        undecodable: UnicodeDecodeError | None = None
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", errors="replace").strip()
            undecodable = exc
        if not text:
            continue
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
            except ValueError as exc:
                raise ValidationError(
                    f"line {number}", text[:60], f"a JSON object (invalid JSON: {exc})"
                ) from None
            if not isinstance(data, dict):
                raise ValidationError(f"line {number}", text[:60], "a JSON object")
            jobs.append(parse_job(data, line=number, base_dir=base_dir))
        except ValidationError as exc:
            if on_error == "stop":
                raise
            jobs.append(InvalidJob(number, exc, text[:200]))
    return jobs


# -- the engine -----------------------------------------------------------------------------------


class _NotStarted(Exception):
    """The run was stopped while the item waited for a request slot."""


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()

Job = Request | InvalidJob | Mapping[str, Any]
Source = str | os.PathLike[str] | Iterable[Job] | AsyncIterable[Job]


class BatchRun:
    """A running bulk job: iterate it for outcomes as items finish.

    Prefer ``async with client.batch(...) as run: async for outcome in run: ...`` so that
    leaving the loop early stops the workers and closes the manifest at once. Created by
    :func:`run_batch`; nothing starts before the first iteration.

    Attributes:
        progress: live counters (also carried by every event).
        output_dir: where images, the manifest and the gallery go (made absolute).
        manifest_path: the manifest file.
    """

    def __init__(
        self,
        client: AsyncClient,
        requests: Source,
        *,
        output_dir: str | os.PathLike[str],
        manifest: str | os.PathLike[str] | None = None,
        concurrency: int = 16,
        retry_failed: bool = False,
        resend_unknown: bool = False,
        on_event: Callable[[ProgressEvent], None] | None = None,
        on_exists: OnExists = "overwrite",
        verify_sha256: bool = False,
    ) -> None:
        if not int_at_least(concurrency, 1):
            raise ValidationError("concurrency", concurrency, "an int >= 1")
        if on_exists not in ("fail", "overwrite", "skip"):
            raise ValidationError("on_exists", on_exists, "one of 'fail', 'overwrite', 'skip'")
        self._client = client
        self._requests = requests
        # Resolved once, so Outcome.files are absolute as documented and a later chdir cannot
        # move the job.
        self.output_dir = Path(output_dir).resolve()
        self.manifest_path = (
            Path(manifest) if manifest is not None else self.output_dir / "manifest.jsonl"
        )
        self._concurrency = concurrency
        self._resume = ResumeOptions(retry_failed=retry_failed, resend_unknown=resend_unknown)
        self._on_exists: OnExists = on_exists
        self._verify = verify_sha256
        self._tally = Tally(on_event)
        self.progress = self._tally.progress
        self._stop = asyncio.Event()
        self._agen: AsyncIterator[Outcome] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<BatchRun output_dir={str(self.output_dir)!r} {self.progress!r}>"

    # -- control ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop starting new items; items in flight finish and are recorded, then iteration ends.

        Safe to call from a signal handler running on the event loop. The items not started
        are not recorded, so running the same job again picks up exactly there.
        """
        if not self._stop.is_set():
            self._stop.set()
            self.progress.interrupted = True

    @property
    def stopping(self) -> bool:
        """``True`` once :meth:`stop` was called."""
        return self._stop.is_set()

    # -- iteration -------------------------------------------------------------------------------

    def __aiter__(self) -> BatchRun:
        return self

    async def __anext__(self) -> Outcome:
        if self._closed:
            raise StopAsyncIteration
        if self._agen is None:
            self._agen = self._run()
        try:
            return await self._agen.__anext__()
        except StopAsyncIteration:
            self._closed = True
            raise

    async def aclose(self) -> None:
        """Stop the workers (cancelling items in flight), flush and close the manifest."""
        self._closed = True
        agen, self._agen = self._agen, None
        if agen is not None:
            await agen.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> BatchRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def collect(self) -> list[Outcome]:
        """Run to the end and return every outcome, in finishing order."""
        async with self:
            return [outcome async for outcome in self]

    # -- internals -------------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[Outcome]:
        prior = await asyncio.to_thread(load_manifest, self.manifest_path)
        await asyncio.to_thread(self.output_dir.mkdir, parents=True, exist_ok=True)
        writer = ManifestWriter(self.manifest_path)
        await writer.open()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        # The run hears of retries and 429s through the client's public event hooks; it tells
        # its own items apart by the origin each event carries.
        self._client.add_event_hook(self._tally.on_client_event)
        producer = asyncio.ensure_future(self._produce(prior, writer, queue, tasks))
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            pending = [t for t in (producer, *tasks) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            if not producer.cancelled() and producer.done():
                producer.exception()  # retrieved; raised above through _Failure when relevant
            self._client.remove_event_hook(self._tally.on_client_event)
            await writer.aclose()
            self.progress.finish()
            self._tally.emit("finished", None)

    async def _iterate(self) -> AsyncIterator[Job]:
        source = self._requests
        if isinstance(source, (str, os.PathLike)):
            for loaded in await asyncio.to_thread(load_jobs, source):
                yield loaded
        elif isinstance(source, AsyncIterable):
            async for job in source:
                yield job
        else:
            for job in source:
                yield job

    async def _produce(
        self,
        prior: dict[str, ManifestRecord],
        writer: ManifestWriter,
        queue: asyncio.Queue[Any],
        tasks: set[asyncio.Task[None]],
    ) -> None:
        try:
            item_slots = asyncio.Semaphore(self._concurrency * 2)
            request_slots = asyncio.Semaphore(self._concurrency)
            ids: set[str] = set()
            repeats: dict[str, int] = {}
            async for job in self._iterate():
                if self._stop.is_set():
                    break
                self.progress.total += 1
                item = self._accept(job, ids, repeats, prior)
                if isinstance(item, Outcome):
                    if not item.skipped:
                        self.progress.failed += 1
                        self._tally.emit(
                            "failed", item.id, status="failed", error=item.error, line=item.line
                        )
                    queue.put_nowait(item)
                    continue
                await item_slots.acquire()
                if self._stop.is_set():
                    item_slots.release()
                    break
                task = asyncio.ensure_future(
                    self._run_item(item, writer, queue, request_slots, item_slots)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                results = await asyncio.gather(*list(tasks), return_exceptions=True)
                for result in results:
                    # Items turn their own failures into outcomes; what escapes (the manifest
                    # cannot be written) must end the run.
                    if isinstance(result, Exception):
                        raise result
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            queue.put_nowait(_Failure(exc))
            return
        queue.put_nowait(_DONE)

    def _accept(
        self,
        source_job: Job,
        ids: set[str],
        repeats: dict[str, int],
        prior: dict[str, ManifestRecord],
    ) -> Item | Outcome:
        """Validate and name a job, and decide from the manifest whether it runs."""
        job: Request | InvalidJob
        if isinstance(source_job, Mapping):
            try:
                job = parse_job(source_job)
            except ValidationError as exc:
                job = InvalidJob(None, exc)
        else:
            job = source_job
        if isinstance(job, InvalidJob):
            name = f"line-{job.line}" if job.line is not None else f"item-{self.progress.total}"
            return Outcome(name, "failed", error=job.error, line=job.line)
        if not isinstance(job, (GenerateRequest, EditRequest)):
            error = ValidationError("request", job, "a GenerateRequest, EditRequest or dict")
            return Outcome(f"item-{self.progress.total}", "failed", error=error)
        try:
            job.validate()
        except ValidationError as exc:
            return Outcome(
                job.id or f"item-{self.progress.total}", "failed", job, error=exc, line=job.line
            )
        if job.id is not None:
            item_id = job.id
            if item_id in ids:
                error = ValidationError("id", item_id, "unique within the job")
                return Outcome(item_id, "failed", job, error=error, line=job.line)
        else:
            base = derive_id(job)
            # The same request twice (asking for more variety) gets -2, -3, ... in job order.
            count = repeats.get(base, 0) + 1
            repeats[base] = count
            item_id = base if count == 1 else f"{base}-{count}"
        ids.add(item_id)
        item = Item(item_id, job, self._tally)
        earlier = prior.get(item_id)
        if earlier is not None and earlier.request == job.to_json():
            decision = self._resume_decision(item, earlier)
            if decision is not None:
                self.progress.skipped += 1
                self._tally.emit("skipped", item_id, status=decision.status, line=job.line)
                return decision
        self._tally.emit("queued", item_id, line=job.line)
        return item

    def _resume_decision(self, item: Item, earlier: ManifestRecord) -> Outcome | None:
        """``None`` to run the item; else the outcome of skipping it."""
        intact = earlier.status == "ok" and earlier.files_intact(
            self.output_dir, check_sha256=self._verify
        )
        decision = decide_resume(earlier, self._resume, files_intact=intact)
        if decision.action == "download":
            item.prior = earlier
            item.download_only = True
            return None
        if decision.action == "run":
            if earlier.status == "ok":
                logger.info(
                    "%s: recorded ok but its files are missing or changed; running it", item.id
                )
            return None
        request = item.request
        files = tuple(self.output_dir / f.path for f in earlier.files)
        status: Any = earlier.status
        return Outcome(item.id, status, request, files, decision.error, True, request.line, earlier)

    async def _run_item(
        self,
        item: Item,
        writer: ManifestWriter,
        queue: asyncio.Queue[Any],
        request_slots: asyncio.Semaphore,
        item_slots: asyncio.Semaphore,
    ) -> None:
        record: ManifestRecord | None = None
        try:
            try:
                record, outcome = await self._process(item, request_slots)
            except _NotStarted:
                return
            except asyncio.CancelledError:
                record = interrupted_record(item, self.output_dir)
                if record is not None:
                    await asyncio.shield(writer.write(record))
                raise
            except Exception as exc:  # a bug must not take the other items down
                logger.exception("xai-images batch: item %s failed unexpectedly", item.id)
                record, outcome = self._finish(item, "failed", error=exc)
            await writer.write(record)
        finally:
            item_slots.release()
        self._tally.count(outcome)
        queue.put_nowait(outcome)

    async def _process(
        self, item: Item, request_slots: asyncio.Semaphore
    ) -> tuple[ManifestRecord, Outcome]:
        if item.download_only:
            assert item.prior is not None
            result = await self._download_pending(item)
            if result is not None:
                return result
            # The URLs expired and the caller allowed paying again: generate afresh.
        async with request_slots:
            if self._stop.is_set() and not item.download_only:
                # Stopped while waiting for a request slot: not started, so not recorded.
                raise _NotStarted
            self.progress.started += 1
            self._tally.emit("started", item.id, line=item.request.line)
            item.sent = True
            try:
                response = await self._send(item)
            except OutcomeUnknownError as exc:
                return self._finish(item, "unknown", error=exc)
            except (APIError, ValidationError, XAIImagesError) as exc:
                if isinstance(exc, APIConnectionError) and self.progress.generated == 0:
                    # Nothing got through yet: the API is unreachable, stop instead of failing
                    # every item one by one. The others are not recorded, so a re-run resumes.
                    logger.error("xai-images batch: stopping, the API is unreachable: %s", exc)
                    self.stop()
                return self._finish(item, "failed", error=exc)
        item.response = response
        self.progress.generated += 1
        ticks = response.usage.cost_in_usd_ticks if response.usage else None
        self.progress.cost_in_usd_ticks += ticks or 0
        images = response.images
        self._tally.emit("generated", item.id, images=len(images), line=item.request.line)
        if not images:
            blocked = ImageBlockedError(
                f"all {response.blocked_count or 'requested'} image(s) were withheld by moderation"
            )
            return self._finish(item, "blocked", error=blocked, billed=bool(ticks))
        saved, pending, errors = await self._save_images(item, images)
        note = None
        if response.blocked_count:
            note = f"{response.blocked_count} image(s) withheld by moderation"
        if errors:
            return self._finish(
                item, "failed", error=errors[0], files=saved, pending=pending, billed=True
            )
        return self._finish(item, "ok", files=saved, billed=True, note=note)

    async def _send(self, item: Item) -> ImagesResponse:
        """Send the item's request once (with the client's retries), naming the item as origin."""
        request = item.request
        options = request.options()
        if isinstance(request, EditRequest):
            path = "/images/edits"
            inputs = request.resolved_inputs()
            if "images" in inputs:
                resolved = await resolve_images(list(inputs["images"]))
                body = edit_body(request.prompt, images=resolved, **options)
            else:
                body = edit_body(
                    request.prompt, image=await resolve_image(inputs["image"]), **options
                )
        else:
            path = "/images/generations"
            body = generate_body(request.prompt, **options)
        client = self._client
        answer = await client._request("POST", path, body=body, origin=item)
        return parse_images_response(
            answer.body,
            answer.payloads,
            request_id=answer.request_id,
            requested=request.n if request.n is not None else 1,
            transfers=client._transfers,
            where=f"POST {path}",
        )

    async def _save_images(
        self, item: Item, images: Sequence[GeneratedImage]
    ) -> tuple[list[SavedImage], list[PendingImage], list[BaseException]]:
        for image in images:
            self._tally.saving[id(image)] = item
        try:
            results = await asyncio.gather(
                *(
                    image.save(
                        self.output_dir / f"{item.id}-{image.index}", on_exists=self._on_exists
                    )
                    for image in images
                ),
                return_exceptions=True,
            )
        finally:
            for image in images:
                self._tally.saving.pop(id(image), None)
        saved: list[SavedImage] = []
        pending: list[PendingImage] = []
        errors: list[BaseException] = []
        for image, result in zip(images, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if not isinstance(result, (DownloadError, XAIImagesError, OSError)):
                    raise result
                errors.append(result)
                pending.append(PendingImage(image.index, image.url, image.revised_prompt))
            else:
                saved.append(result)
        self.progress.images += len(saved)
        self.progress.bytes += sum(s.bytes for s in saved if not s.skipped)
        return saved, pending, errors

    async def _download_pending(self, item: Item) -> tuple[ManifestRecord, Outcome] | None:
        """Fetch the images of an earlier billed item again; ``None`` to generate afresh."""
        prior = item.prior
        assert prior is not None
        self._tally.emit("started", item.id, line=item.request.line)
        images = [
            GeneratedImage(
                url=p.url,
                revised_prompt=p.revised_prompt,
                index=p.index,
                request_id=prior.request_id,
                transfers=self._client._transfers,
            )
            for p in prior.pending
            if p.url
        ]
        saved, pending, errors = await self._save_images(item, images)
        kept = [f for f in prior.files if (self.output_dir / f.path).is_file()]
        if errors and all(isinstance(e, ImageExpiredError) for e in errors):
            if self._resume.resend_unknown:
                item.download_only = False
                return None
            pending = []  # expired for good: a later retry must not try them again
        status: ItemStatus = "failed" if errors else "ok"
        record, outcome = self._finish(
            item,
            status,
            error=errors[0] if errors else None,
            files=saved,
            pending=pending,
            billed=True,
            keep=kept,
        )
        return record, outcome

    def _finish(
        self,
        item: Item,
        status: ItemStatus,
        *,
        error: BaseException | None = None,
        files: Sequence[SavedImage] = (),
        pending: Sequence[PendingImage] = (),
        billed: bool = False,
        note: str | None = None,
        keep: Sequence[FileRecord] = (),
    ) -> tuple[ManifestRecord, Outcome]:
        record = item_record(
            item,
            status,
            self.output_dir,
            error=error,
            files=files,
            pending=pending,
            billed=billed,
            note=note,
            keep=keep,
        )
        request = item.request
        outcome = Outcome(
            item.id,
            status,
            request,
            tuple(self.output_dir / f.path for f in record.files),
            error,
            False,
            request.line,
            record,
        )
        return record, outcome


# The engine behind ``AsyncClient.batch`` (which documents every argument):
# ``run_batch(client, requests, ...)`` is ``client.batch(requests, ...)``.
run_batch = BatchRun
