"""``client.files``: xAI's Files API (``/v1/files``).

Upload (multipart, the metadata fields before the file part, as the API reads the parts in
order), list (token pages), get, download the content (streamed to a local file or an `Output`
target, never held whole in memory), delete, and public URLs. Reads are retried freely; an upload
whose answer was lost is not resent (it may be stored: give it ``expires_after`` so that it
cleans itself up).
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import attrs

from .._errors import ValidationError
from .._results._files import check_on_exists, safe_component
from .._results._output import OnExists, Output, Stored
from .._wire._paths import segment
from ._batch_models import FileObject, parse_file
from ._paging import pages
from ._resource import Resource
from ._rules import MAX_STORE_SECONDS, MIN_STORE_SECONDS, check_seconds

if TYPE_CHECKING:
    pass

__all__ = ["DeletedFile", "FilePublicUrl", "Files"]

_CHUNK = 256 * 1024


@attrs.frozen
class DeletedFile:
    """The answer to ``files.delete``: the API confirmed the deletion.

    Attributes:
        id: the deleted file's id.
        deleted: always ``True`` (an answer saying otherwise raises ``APIResponseError``).
        request_id: the ``x-request-id`` of the answer.
    """

    id: str
    deleted: bool = True
    request_id: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class FilePublicUrl:
    """A public URL of a stored file (``files.create_public_url``).

    Attributes:
        file_id: the file it shows.
        public_url: anyone with it can read the file, until it expires or is revoked.
        expires_at: when it expires, as the API sent it (Unix seconds), or ``None``.
        request_id: the ``x-request-id`` of the answer.
    """

    file_id: str
    public_url: str
    expires_at: int | None = None
    request_id: str | None = attrs.field(default=None, eq=False)


def _check_expires(name: str, value: object) -> None:
    if value is not None:
        check_seconds(name, value, MIN_STORE_SECONDS, MAX_STORE_SECONDS)


def _form_field(boundary: str, name: str, value: bytes) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value
        + b"\r\n"
    )


def _part_type(name: str) -> str:
    if name.lower().endswith(".jsonl"):
        return "application/jsonl"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _local_target(target: str | os.PathLike[str]) -> tuple[Path, bool]:
    final = Path(target).expanduser().absolute()
    return final, final.is_dir()


def _mime_of(resp: aiohttp.ClientResponse) -> str:
    return resp.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()


class Files(Resource):
    """xAI's Files API (``client.files``): JSONL inputs of batches, images stored with
    ``storage_options``, and any other file of the team."""

    _label = "Files"

    def _path(self, file_id: str, suffix: str = "") -> str:
        return "/files/" + segment(file_id, "file_id") + suffix

    async def upload(
        self,
        file: str | os.PathLike[str] | bytes,
        *,
        filename: str | None = None,
        purpose: str | None = None,
        expires_after: int | None = 86_400,
    ) -> FileObject:
        """Upload a file (a path, or its bytes), e.g. for ``batches.create(input_file_id=...)``.

        Args:
            filename: the name stored (default: the path's name, or ``batch.jsonl``).
            purpose: sent as the ``purpose`` field when given (xAI may store it as ``""``).
            expires_after: seconds (3600 to 2592000) after which xAI deletes it, so that an
                upload whose answer was lost cleans itself up; ``None`` keeps it.

        Raises:
            ValidationError: ``expires_after`` out of range, or ``purpose`` not a string.
            APIStatusError: e.g. 413 over 50 MB.
            OutcomeUnknownError: the answer was lost (not resent: it may be stored).
        """
        _check_expires("expires_after", expires_after)
        if purpose is not None and not isinstance(purpose, str):
            raise ValidationError("purpose", purpose, "a string or None")
        if isinstance(file, (bytes, bytearray)):
            data, name = bytes(file), filename or "batch.jsonl"
        else:
            path = Path(file)
            data = await asyncio.to_thread(path.read_bytes)
            name = filename or path.name
        boundary = "xai-images-" + secrets.token_hex(12)
        # The API reads the parts in order: metadata before the file (else 400).
        parts: list[bytes] = []
        if expires_after is not None:
            parts.append(_form_field(boundary, "expires_after", str(expires_after).encode()))
        if purpose is not None:
            parts.append(_form_field(boundary, "purpose", purpose.encode("utf-8")))
        safe_name = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{safe_name}"\r\nContent-Type: {_part_type(name)}\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        content = (b"".join(parts), f"multipart/form-data; boundary={boundary}")
        answer = await self._requester.send("POST", "/files", content=content, reconciled=True)
        return parse_file(answer.body, "POST /files", request_id=answer.request_id)

    async def list(
        self,
        *,
        page_size: int | None = None,
        order: str | None = None,
        sort_by: str = "created_at",
    ) -> AsyncIterator[FileObject]:
        """Every file of the team, page by page (``GET /files``).

        Args:
            page_size: files per page (``limit``); the server's default when ``None``.
            order: ``"asc"`` or ``"desc"``; the server's default when ``None``.
            sort_by: ``created_at`` (the default, as xAI's SDK sends it), ``filename``,
                ``size``, ...

        Raises:
            APIResponseError: a page without a ``data`` list.
        """
        params = {"limit": page_size, "order": order, "sort_by": sort_by}
        async for items, answer in pages(self._requester, "/files", "data", params):
            for item in items:
                yield parse_file(item, "GET /files", request_id=answer.request_id)

    async def get(self, file_id: str) -> FileObject:
        """The file's metadata.

        Raises:
            NotFoundError: no such file (deleted or expired).
        """
        path = self._path(file_id)
        answer = await self._requester.send("GET", path, idempotent=True)
        return parse_file(answer.body, f"GET {path}", request_id=answer.request_id)

    async def delete(self, file_id: str) -> DeletedFile:
        """Delete a file.

        Raises:
            NotFoundError: no such file.
            APIResponseError: the answer does not say ``deleted: true``.
        """
        path = self._path(file_id)
        answer = await self._requester.send("DELETE", path, idempotent=True)
        body = answer.body
        if not isinstance(body, Mapping) or body.get("deleted") is not True:
            raise answer.invalid(
                "DELETE",
                path,
                f"DELETE {path}: the answer does not confirm the deletion ({body!r:.200})",
            )
        found = body.get("id")
        return DeletedFile(
            found if isinstance(found, str) and found else file_id, request_id=answer.request_id
        )

    async def create_public_url(
        self, file_id: str, *, expires_after: int | None = None
    ) -> FilePublicUrl:
        """Make a public URL for a stored file (``POST /files/{id}/public-url``).

        Args:
            expires_after: seconds the URL lives (3600 to 2592000); the server's default
                when ``None``.

        Raises:
            ValidationError: ``expires_after`` out of range.
            NotFoundError: no such file.
            APIResponseError: the answer has no ``public_url``.
        """
        _check_expires("expires_after", expires_after)
        path = self._path(file_id, "/public-url")
        body = {} if expires_after is None else {"expires_after": expires_after}
        answer = await self._requester.send("POST", path, body=body, idempotent=True)
        data = answer.body if isinstance(answer.body, Mapping) else {}
        url = data.get("public_url")
        if not isinstance(url, str) or not url:
            raise answer.invalid("POST", path, f"POST {path}: the answer has no public_url")
        expires = data.get("expires_at")
        return FilePublicUrl(
            file_id,
            url,
            expires if isinstance(expires, int) and not isinstance(expires, bool) else None,
            request_id=answer.request_id,
        )

    async def revoke_public_url(self, file_id: str) -> bool:
        """Revoke a file's public URL; ``True`` when one was revoked, ``False`` when it had none.

        Raises:
            NotFoundError: no such file.
            APIResponseError: the answer does not say ``revoked``.
        """
        path = self._path(file_id, "/public-url/revoke")
        answer = await self._requester.send("POST", path, idempotent=True)
        data = answer.body
        revoked = data.get("revoked") if isinstance(data, Mapping) else None
        if not isinstance(revoked, bool):
            raise answer.invalid(
                "POST", path, f"POST {path}: the answer does not say whether it revoked"
            )
        return revoked

    async def download(
        self,
        file_id: str,
        target: str | os.PathLike[str] | Output,
        *,
        name: str | None = None,
        on_exists: OnExists = "fail",
    ) -> Stored:
        """Stream a file's content (``GET /files/{id}/content``) to ``target``.

        The bytes go to disk (or the store) as they arrive: memory stays at one chunk
        whatever the file's size. Nothing appears under the final name until the content is
        complete; a failed or retried download leaves no partial file.

        Args:
            target: a file path; an existing directory (the file is saved there under its
                stored name, made a safe single name); or an `Output` (an object-store
                target), where it is stored under ``name`` or its stored name.
            name: the name in a directory or `Output` target (default: the file's stored
                name, looked up with `get`).
            on_exists: ``"fail"`` (default), ``"overwrite"`` or ``"skip"`` (keep an identical
                existing file).

        Returns:
            the `Stored` record: location, size and sha256 of what was written.

        Raises:
            NotFoundError: no such file.
            FileCollisionError: the name is taken and ``on_exists`` keeps it.
            SaveError: the target could not be written.
        """
        check_on_exists(on_exists)
        path = self._path(file_id, "/content")
        if isinstance(target, (str, os.PathLike)):
            final, is_dir = await asyncio.to_thread(_local_target, target)
            if not is_dir:
                # A file path: its directory is the target, its name the key.
                output = await self._requester.transfers.output(final.parent, field="target")
                return await self._to_output(path, output, final.name, on_exists)
            target = await self._requester.transfers.output(final, field="target")
        key = safe_component(name or await self._stored_name(file_id))
        return await self._to_output(path, target, key, on_exists)

    async def read(self, file_id: str) -> bytes:
        """A file's whole content in memory (for small files; prefer `download`).

        Raises:
            NotFoundError: no such file.
        """
        path = self._path(file_id, "/content")

        async def collect(resp: aiohttp.ClientResponse) -> bytes:
            return await resp.read()

        answer = await self._requester.send("GET", path, idempotent=True, consume=collect)
        data: bytes = answer.body
        return data

    async def _stored_name(self, file_id: str) -> str:
        found = await self.get(file_id)
        return found.filename or file_id

    async def _to_output(self, path: str, output: Output, key: str, on_exists: OnExists) -> Stored:
        async def consume(resp: aiohttp.ClientResponse) -> Stored:
            # Each attempt starts a fresh upload: a retry never appends to a partial one.
            upload = await output.open(key, _mime_of(resp), on_exists=on_exists)
            try:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    await upload.write(chunk)
                return await upload.commit()
            except BaseException:
                await upload.abort()
                raise

        answer = await self._requester.send("GET", path, idempotent=True, consume=consume)
        stored: Stored = answer.body
        return stored
