"""Response models: frozen attrs classes, built from JSON by the one converter (``_convert.py``).

Parsing is lenient where the server is in charge (unknown fields are ignored, ``null`` is
accepted wherever a value is optional, server-controlled values such as ``mime_type`` and
``model`` are plain ``str``) so that a new field or value never breaks a caller.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from .._errors import APIResponseError, ConfigurationError, ImageBlockedError
from .._results._files import safe_component
from .._units import TICKS_PER_USD, format_usd
from .._wire._b64stream import PAYLOAD_KEY
from ._convert import structure
from ._usage import InputTokensDetails, OutputTokensDetails, Usage

if TYPE_CHECKING:
    import os

    from .._results._files import OnExists, SavedImage
    from .._results._output import Output
    from .._results._preview import Picture
    from .._results._transfers import Transfers

__all__ = [
    "TICKS_PER_USD",
    "DeferredRequest",
    "DeferredStatus",
    "FileOutput",
    "GeneratedImage",
    "ImagesResponse",
    "InputTokensDetails",
    "OutputTokensDetails",
    "Usage",
    "image_bundle",
    "parse_images_response",
    "response_bundle",
]


def _no_client() -> ConfigurationError:
    return ConfigurationError(
        "this image is not attached to a client; it must come from client.images.generate() "
        "or edit() to be saved, streamed or read"
    )


@attrs.frozen
class FileOutput:
    """Where the API stored an image in the Files store (asked for with ``storage_options``,
    a field sent as an extra body field); every field is ``None`` when the server left it out.

    Attributes:
        file_id: the stored file's id (usable as an edit input: ``FileId(file_id)``).
        filename: its name in the Files store.
        expires_at: when the stored file expires (as the server sent it: Unix seconds, or a
            string).
        public_url: a public URL of the file, when one was asked for.
        public_url_error: why no public URL could be made.
        public_url_expires_at: when the public URL expires.
    """

    file_id: str | None = None
    filename: str | None = None
    expires_at: int | str | None = None
    public_url: str | None = None
    public_url_error: str | None = None
    public_url_expires_at: int | str | None = None


@attrs.frozen
class GeneratedImage:
    """One image of an answer: a temporary URL, or decoded bytes (``b64_json`` format).

    Attributes:
        url: the temporary image URL (``None`` in ``b64_json`` mode). Image URLs expire:
            save or read promptly.
        mime_type: the type the server declared (``image/jpeg``, ``image/png``, ...); saving
            names files from the sniffed bytes, not from this.
        revised_prompt: the prompt the model actually used, when the server returns it.
        respect_moderation: the server's moderation flag, when present.
        index: position of the image in its answer (0-based).
        request_id: the API request id of the answer it came from.
        file_output: where the image was stored in the Files store, when the request asked for
            it (``storage_options``); else ``None``.
        storage_error: why storing it in the Files store failed, when it did.
    """

    url: str | None = None
    mime_type: str | None = None
    revised_prompt: str | None = None
    respect_moderation: bool | None = None
    index: int = 0
    request_id: str | None = None
    file_output: FileOutput | None = None
    storage_error: str | None = None
    _content: bytes | None = attrs.field(default=None, eq=False, repr=False, alias="content")
    _transfers: Transfers | None = attrs.field(
        default=None, eq=False, repr=False, alias="transfers"
    )

    @property
    def content(self) -> bytes | None:
        """The decoded image bytes (``b64_json`` mode), else ``None``. No network access."""
        return self._content

    @property
    def b64_json(self) -> str | None:
        """The image as bare base64 (no ``data:`` prefix), encoded on each access; or ``None``."""
        if self._content is None:
            return None
        return base64.b64encode(self._content).decode("ascii")

    @property
    def blocked(self) -> bool:
        """``True`` when the answer carried neither a URL nor image data (moderation)."""
        return self.url is None and self._content is None

    @property
    def source(self) -> str | None:
        """Where the bytes come from: ``"b64_json"`` (in memory), ``"url"``, or ``None``."""
        if self._content is not None:
            return "b64_json"
        if self.url is not None:
            return "url"
        return None

    @property
    def stem(self) -> str:
        """Default file name without extension: ``{request_id}-{index}`` (``image`` if no id),
        made one harmless file name component (the server chooses the request id)."""
        return safe_component(f"{self.request_id or 'image'}-{self.index}")

    def _attached(self) -> Transfers:
        if self.blocked:
            raise ImageBlockedError(
                f"image {self.index} of request {self.request_id or '(no id)'} was withheld by "
                "moderation: the answer had neither url nor b64_json"
            )
        if self._transfers is None:
            raise _no_client()
        return self._transfers

    async def save(
        self, path: str | os.PathLike[str] | Output, *, on_exists: OnExists = "fail"
    ) -> SavedImage:
        """Write the image to ``path`` atomically (see ``Transfers.save`` for naming rules).

        ``path`` is a file name, a directory, a ``file://`` URL or an
        `xai_images.outputs.Output`.

        Raises:
            ImageBlockedError: the image was withheld by moderation.
            DownloadError: fetching or writing failed (subclasses say why).
        """
        return await self._attached().save(self, path, on_exists=on_exists)

    def stream(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """Iterate over the image bytes as they arrive (URL) or in slices (``b64_json``).

        Raises:
            ImageBlockedError: the image was withheld by moderation (raised at once).
            DownloadError: fetching failed after retries.
        """
        return self._attached().stream(self, chunk_size=chunk_size)

    async def read(self) -> bytes:
        """Return the whole image in memory (downloads it in URL mode; buffers it all).

        Raises:
            ImageBlockedError: the image was withheld by moderation.
            DownloadError: fetching failed after retries.
        """
        if self._content is not None:
            return self._content
        parts = [chunk async for chunk in self._attached().stream(self)]
        return b"".join(parts)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return image_bundle(self, picture_of(self))


@attrs.frozen
class ImagesResponse:
    """The answer to a generation or an edit.

    Attributes:
        data: the images, in order. Blocked images stay in place (see `blocked`).
        usage: the cost, when the server reported it.
        request_id: the API request id (``x-request-id``), for support tickets; for the images
            of a deferred request, the deferred request's id (the poll's ``x-request-id`` is on
            `DeferredStatus.x_request_id`).
        model: the model that answered, when the server said.
        created: the server's Unix timestamp, when present.
        requested: how many images were asked for (``n``, default 1). When moderation drops
            images from ``data`` altogether, ``blocked_count`` still counts them.
    """

    data: tuple[GeneratedImage, ...] = ()
    usage: Usage | None = None
    request_id: str | None = None
    model: str | None = None
    created: int | None = None
    requested: int | None = None
    _transfers: Transfers | None = attrs.field(
        default=None, eq=False, repr=False, alias="transfers"
    )

    @property
    def blocked(self) -> tuple[GeneratedImage, ...]:
        """The images in `data` that were withheld by moderation."""
        return tuple(image for image in self.data if image.blocked)

    @property
    def blocked_count(self) -> int:
        """Images withheld by moderation: blocked entries plus those missing from ``data``.

        The live API has answered moderated requests both ways: a 200 with an empty ``data``
        list, and per-image entries without ``url``/``b64_json``.
        """
        missing = max(0, (self.requested or 0) - len(self.data))
        return len(self.blocked) + missing

    @property
    def images(self) -> tuple[GeneratedImage, ...]:
        """The images that were delivered (``data`` without blocked entries)."""
        return tuple(image for image in self.data if not image.blocked)

    async def save(
        self,
        directory: str | os.PathLike[str] | Output = ".",
        *,
        name: str = "{request_id}-{index}",
        on_exists: OnExists = "fail",
        concurrency: int | None = None,
    ) -> list[SavedImage]:
        """Save every delivered image into ``directory`` in parallel, atomically.

        ``directory`` is a path, a ``file://`` URL or an `xai_images.outputs.Output`.
        Blocked images are skipped (count them with `blocked_count`). ``name`` is a
        pattern with ``{request_id}`` and ``{index}``; the extension comes from the bytes.
        ``concurrency`` may lower the client's download concurrency for this call.

        Raises:
            DownloadError: a download or write failed (the others still finish first).
            ConfigurationError: the response is not attached to a client.
        """
        if self._transfers is None:
            raise _no_client()
        return await self._transfers.save_all(
            self.images, directory, name=name, on_exists=on_exists, concurrency=concurrency
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return response_bundle(self, [picture_of(image) for image in self.data])


@attrs.frozen
class DeferredStatus:
    """The state of a deferred request.

    Attributes:
        status: ``"pending"`` (the API answered 202, or a still-running status such as
            ``queued``, ``processing``, ``running`` or ``in_progress``), ``"done"``,
            ``"failed"``, ``"expired"`` (the API answered 404: unknown or expired id), or
            another value the server sends (lower-cased), which ``wait()`` treats as a final
            failure.
        response: the images once ``status == "done"``, else ``None``.
        error: the server's message when ``status`` is ``"failed"`` or ``"expired"`` (or
            another final status, when the server sent one).
        raw_status: the ``status`` field exactly as the server sent it (``None`` when absent),
            e.g. ``"queued"`` where `status` says ``"pending"``.
        request_id: the deferred request's id: the answer's ``request_id``, or the id that was
            polled when the answer has none (a 202 usually has no body).
        x_request_id: the ``x-request-id`` header of this poll's answer: the id of the poll
            itself, for support tickets; it differs from `request_id`.
    """

    status: str
    response: ImagesResponse | None = None
    error: str | None = None
    raw_status: str | None = None
    request_id: str | None = None
    x_request_id: str | None = attrs.field(default=None, eq=False)


class _Poller(Protocol):
    """What a `DeferredRequest` needs of ``client.images``."""

    async def get_deferred(self, request_id: str) -> DeferredStatus: ...

    async def wait_deferred(
        self,
        request_id: str,
        *,
        timeout: float | None,
        poll_interval: float,
        max_poll_interval: float,
    ) -> ImagesResponse: ...


@attrs.frozen
class DeferredRequest:
    """A deferred generation or edit, started with ``deferred=True``; poll it or wait for it.

    Attributes:
        request_id: the deferred request's id (the body's ``request_id``), which polls use.
        x_request_id: the ``x-request-id`` header of the answer that started it (the id of that
            HTTP exchange, for support tickets).
    """

    request_id: str
    x_request_id: str | None = attrs.field(default=None, eq=False, kw_only=True)
    _images: _Poller | None = attrs.field(default=None, eq=False, repr=False, alias="images")

    def _attached(self) -> _Poller:
        if self._images is None:
            raise _no_client()
        return self._images

    async def status(self) -> DeferredStatus:
        """Poll once (``client.images.get_deferred``)."""
        return await self._attached().get_deferred(self.request_id)

    async def wait(
        self,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
    ) -> ImagesResponse:
        """Wait until done (``client.images.wait_deferred``).

        Raises:
            DeferredError: the request failed, expired, ended with another final status
                (e.g. ``cancelled``), or was not done within ``timeout``.
        """
        return await self._attached().wait_deferred(
            self.request_id,
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
        )


# -- display -------------------------------------------------------------------------------------


def picture_of(image: GeneratedImage) -> Picture:
    """What a display can show of ``image`` without fetching: its bytes, its URL or why not."""
    from .._results._preview import Link  # display code is loaded at the first display

    if image.content is not None:
        return image.content
    if image.blocked:
        return "withheld by moderation"
    return Link(image.url) if image.url else "no image"


def image_bundle(image: GeneratedImage, picture: Picture) -> dict[str, Any]:
    """The display of one image, shown as ``picture`` (see `picture_of`)."""
    from .._results._preview import picture_bundle

    return picture_bundle(picture, f"image {image.index} of {image.request_id or 'a response'}")


def response_bundle(response: ImagesResponse, pictures: Sequence[Picture]) -> dict[str, Any]:
    """The display of a response: its images (one picture each, in order) and its facts."""
    from .._results._preview import Cell, grid_bundle

    cells = [
        Cell(picture, image.index, image.stem, image.revised_prompt)
        for image, picture in zip(response.data, pictures, strict=True)
    ]
    facts = [f"{len(response.images)} image(s)"]
    if response.blocked_count:
        facts.append(f"{response.blocked_count} withheld by moderation")
    if response.model:
        facts.append(response.model)
    if response.usage is not None and response.usage.cost_in_usd_ticks is not None:
        facts.append(format_usd(response.usage.cost_in_usd_ticks))
    if response.request_id:
        facts.append(f"request {response.request_id}")
    return grid_bundle(cells, facts, repr(response))


# -- parsing -------------------------------------------------------------------------------------


@attrs.frozen
class _WireImage:
    url: str | None = None
    b64_json: Any = None
    mime_type: str | None = None
    revised_prompt: str | None = None
    respect_moderation: bool | None = None
    file_output: FileOutput | None = None
    storage_error: Any = None


@attrs.frozen
class _WireBody:
    data: list[_WireImage] | None = None
    usage: Usage | None = None
    model: str | None = None
    created: int | None = None


def _storage_error(raw: Any) -> str | None:
    """The image's ``storage_error`` as text: a string, or the message of an error object."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, Mapping):
        message = raw.get("message") or raw.get("error")
        code = raw.get("code")
        text = str(message) if message else json.dumps(raw, default=str)
        return f"{code}: {text}" if code and message else text
    return str(raw)


def _decode_b64(value: str, where: str) -> bytes:
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise APIResponseError(f"{where}: b64_json is not valid base64: {exc}") from exc


def _content_of(raw: Any, payloads: Sequence[bytes | bytearray], where: str) -> bytes | None:
    if raw is None:
        return None
    if isinstance(raw, Mapping) and PAYLOAD_KEY in raw:
        index = raw[PAYLOAD_KEY]
        if not isinstance(index, int) or not 0 <= index < len(payloads):
            raise APIResponseError(f"{where}: bad b64_json placeholder {raw!r}")
        payload = payloads[index]
        # The scanner hands out bytes already, so nothing is copied; a bytearray (from another
        # caller) is copied once, because GeneratedImage.content is immutable bytes.
        return payload if isinstance(payload, bytes) else bytes(payload)
    if isinstance(raw, str):
        return _decode_b64(raw, where) if raw else None
    raise APIResponseError(f"{where}: b64_json is a {type(raw).__name__}, not a string")


def parse_images_response(
    body: Any,
    payloads: Sequence[bytes | bytearray] = (),
    *,
    request_id: str | None = None,
    requested: int | None = None,
    transfers: Transfers | None = None,
    where: str = "response",
) -> ImagesResponse:
    """Build an `ImagesResponse` from a decoded JSON body.

    ``transfers`` is what the images save and download through (the client's).

    ``b64_json`` values may be base64 strings (with or without a ``data:`` prefix) or
    ``{"$payload": i}`` placeholders into ``payloads`` (from ``B64ResponseScanner``).

    An empty ``data`` list is moderation (every requested image withheld). A missing or
    ``null`` ``data`` is not: that answer is unreadable, not a verdict on the images.

    Raises:
        APIResponseError: the body is not an object, ``data`` is missing, ``null`` or not a list
            of objects, or a field has an unusable type.
    """
    method, _, path = where.partition(" ")
    located: dict[str, str | None] = (
        {"method": method, "path": path} if method in ("GET", "POST") and path else {}
    )
    if not isinstance(body, Mapping):
        raise APIResponseError(
            f"{where}: expected a JSON object, got {type(body).__name__}", **located
        )
    data = body.get("data")
    if data is None:
        shown = "null" if "data" in body else "missing"
        raise APIResponseError(
            f"{where}: the answer has no list of images (data is {shown})", **located
        )
    if not isinstance(data, list):
        raise APIResponseError(
            f"{where}: data is a {type(data).__name__}, not a list of images", **located
        )
    for index, item in enumerate(data):
        if not isinstance(item, Mapping):
            raise APIResponseError(
                f"{where}: data[{index}] is a {type(item).__name__}, not an image object",
                **located,
            )
    wire = structure(body, _WireBody, where, "shape")
    images = tuple(
        GeneratedImage(
            url=item.url or None,
            mime_type=item.mime_type or None,
            revised_prompt=item.revised_prompt or None,
            respect_moderation=item.respect_moderation,
            index=index,
            request_id=request_id,
            file_output=item.file_output,
            storage_error=_storage_error(item.storage_error),
            content=_content_of(item.b64_json, payloads, f"{where}: data[{index}]"),
            transfers=transfers,
        )
        for index, item in enumerate(wire.data or ())
    )
    return ImagesResponse(
        data=images,
        usage=wire.usage,
        request_id=request_id,
        model=wire.model,
        created=wire.created,
        requested=requested,
        transfers=transfers,
    )
