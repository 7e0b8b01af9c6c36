"""The Files API, as far as batches need it: upload, get, delete, content and list.

- ``POST /v1/files`` (multipart): ``file`` is required; ``expires_after`` (seconds, 3600 to
  2592000) is optional but must come before ``file``, else 400; ``purpose`` is ignored and
  stored as ``""``. A file over ``settings.files_max_bytes`` (50 MB) gets 413. Answers
  ``{id, object: "file", bytes, created_at, expires_at, filename, purpose}`` with an id
  ``file_<uuid>``.
- ``GET /v1/files/{id}`` (404 once deleted or expired), ``DELETE /v1/files/{id}`` ->
  ``{id, deleted: true}``, ``GET /v1/files/{id}/content`` (the bytes, octet-stream).
- ``GET /v1/files?limit&pagination_token&order&sort_by`` -> ``{data, pagination_token}``: a
  token is always given; the list ends when ``data`` is shorter than ``limit``. ``sort_by``
  takes ``created_at``, ``filename``, ``bytes`` or ``size``.
- ``POST /v1/files/{id}/public-url`` (JSON ``{expires_after?}``) -> ``{public_url, expires_at}``;
  the URL (on the fake's own origin, no key needed) serves the content until it expires or
  ``POST /v1/files/{id}/public-url/revoke`` (no body) -> ``{id, revoked, public_url?}``.
- Metadata parts (``expires_after``, ``purpose``) after the file part get 400: the API reads
  the parts in order.

Expiry follows ``settings.clock``.
"""

from __future__ import annotations

import uuid

import attrs
from aiohttp import BodyPartReader, web

from ._batch_common import decode_token, encode_token, json_answer, page_limit, run_scripted
from ._core import ServerCore, current_body

__all__ = ["FilesAPI", "StoredFile"]

_MIN_EXPIRES_AFTER = 3600
_MAX_EXPIRES_AFTER = 2_592_000
_SORT_KEYS = ("created_at", "filename", "bytes", "size")
_DEFAULT_PUBLIC_SECONDS = 3600


@attrs.define
class StoredFile:
    """An uploaded file."""

    id: str
    filename: str
    data: bytes
    created_at: float
    expires_at: float | None
    public_token: str | None = None
    public_expires_at: float | None = None

    def to_json(self) -> dict[str, object]:
        """The file object the API answers."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": int(self.created_at),
            "expires_at": None if self.expires_at is None else int(self.expires_at),
            "filename": self.filename,
            "purpose": "",
        }


class FilesAPI:
    """The Files API routes and store."""

    def __init__(self, core: ServerCore) -> None:
        self._files: dict[str, StoredFile] = {}
        self._core = core

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application."""
        one = "/v1/files/{file_id}"
        content = one + "/content"
        return [
            web.post("/v1/files", self._upload),
            web.get("/v1/files", self._list, allow_head=False),
            web.get(one, self._get, allow_head=False),
            web.delete(one, self._delete),
            web.get(content, self._content, allow_head=False),
            web.post(one + "/public-url", self._public_url),
            web.post(one + "/public-url/revoke", self._revoke),
            web.get("/files-public/{token}", self._public, allow_head=False),
        ]

    def live(self, file_id: str) -> StoredFile | None:
        """The file with this id, unless it was deleted or has expired."""
        stored = self._files.get(file_id)
        if stored is None:
            return None
        if stored.expires_at is not None and self._core.now() >= stored.expires_at:
            del self._files[file_id]
            return None
        return stored

    def _missing(self, file_id: str) -> web.Response:
        return self._core.error(404, f"File {file_id!r} not found.")

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            return await self._read_upload(request)

        return await run_scripted(self._core, request, "upload", run)

    async def _read_upload(self, request: web.Request) -> web.StreamResponse:
        core = self._core
        if request.content_type != "multipart/form-data":
            await request.read()
            return core.error(400, "Expected a multipart/form-data body with a file part.")
        limit = core.settings.files_max_bytes
        reader = await request.multipart()
        expires_after: int | None = None
        purpose: str | None = None
        filename = ""
        data: bytearray | None = None
        problem: tuple[int, str] | None = None
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue  # a nested multipart: nothing the API reads
            name = part.name
            if name == "file":
                data = bytearray()
                filename = part.filename or "file"
                while chunk := await part.read_chunk(1 << 16):
                    if len(data) + len(chunk) > limit:
                        problem = problem or (413, f"The file exceeds {limit} bytes.")
                        data = bytearray()
                        await _drain(part)
                        break
                    data += chunk
            elif name == "purpose":
                purpose = (await part.read()).decode("utf-8", "replace")
                if data is not None:
                    problem = problem or (400, "purpose must come before the file part.")
            elif name == "expires_after":
                text = (await part.read()).decode("utf-8", "replace").strip()
                if data is not None:
                    problem = problem or (400, "expires_after must come before the file part.")
                elif not text.isdigit() or not (
                    _MIN_EXPIRES_AFTER <= int(text) <= _MAX_EXPIRES_AFTER
                ):
                    problem = problem or (
                        400,
                        f"expires_after: must be whole seconds between {_MIN_EXPIRES_AFTER} "
                        f"and {_MAX_EXPIRES_AFTER}.",
                    )
                else:
                    expires_after = int(text)
            else:
                await part.read()  # purpose, and anything else, is ignored
        current_body.get()[0] = {
            "filename": filename,
            "bytes": 0 if data is None else len(data),
            "expires_after": expires_after,
            "purpose": purpose,
        }
        if problem is not None:
            return core.error(*problem)
        if data is None:
            return core.error(400, "The multipart body has no file part.")
        now = core.now()
        stored = StoredFile(
            id=f"file_{uuid.uuid4()}",
            filename=filename,
            data=bytes(data),
            created_at=now,
            expires_at=None if expires_after is None else now + expires_after,
        )
        self._files[stored.id] = stored
        core.ledger.files_uploaded += 1
        core.wake_waiters()
        return json_answer(stored.to_json())

    async def _get(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            file_id = request.match_info["file_id"]
            stored = self.live(file_id)
            return self._missing(file_id) if stored is None else json_answer(stored.to_json())

        return await run_scripted(self._core, request, "file", run)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            file_id = request.match_info["file_id"]
            if self.live(file_id) is None:
                return self._missing(file_id)
            del self._files[file_id]
            return json_answer({"id": file_id, "deleted": True})

        return await run_scripted(self._core, request, "delete", run)

    async def _content(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            file_id = request.match_info["file_id"]
            stored = self.live(file_id)
            if stored is None:
                return self._missing(file_id)
            return _content_answer(stored)

        return await run_scripted(self._core, request, "content", run)

    async def _public_url(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            file_id = request.match_info["file_id"]
            body = await self._core.read_json(request)
            if isinstance(body, web.Response):
                return body
            stored = self.live(file_id)
            if stored is None:
                return self._missing(file_id)
            seconds = body.get("expires_after", _DEFAULT_PUBLIC_SECONDS)
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
                return self._core.error(422, "expires_after: must be whole seconds.")
            stored.public_token = stored.public_token or uuid.uuid4().hex
            stored.public_expires_at = self._core.now() + seconds
            return json_answer(
                {
                    "public_url": self._public_address(stored),
                    "expires_at": int(stored.public_expires_at),
                }
            )

        return await run_scripted(self._core, request, "public-url", run)

    async def _revoke(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            file_id = request.match_info["file_id"]
            await request.read()
            stored = self.live(file_id)
            if stored is None:
                return self._missing(file_id)
            if stored.public_token is None:
                return json_answer({"id": file_id, "revoked": False})
            address = self._public_address(stored)
            stored.public_token = stored.public_expires_at = None
            return json_answer({"id": file_id, "revoked": True, "public_url": address})

        return await run_scripted(self._core, request, "revoke", run)

    async def _public(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        for stored in list(self._files.values()):
            live = stored.public_token == token and self.live(stored.id) is not None
            if live and (
                stored.public_expires_at is None or self._core.now() < stored.public_expires_at
            ):
                return _content_answer(stored)
        return web.Response(status=404, text="Not found")

    def _public_address(self, stored: StoredFile) -> str:
        return f"{self._core.origin}/files-public/{stored.public_token}"

    async def _list(self, request: web.Request) -> web.StreamResponse:
        async def run() -> web.StreamResponse:
            return self._list_page(request)

        return await run_scripted(self._core, request, "files", run)

    def _list_page(self, request: web.Request) -> web.StreamResponse:
        core = self._core
        query = request.query
        limit = page_limit(query, default=100, maximum=1000)
        if isinstance(limit, str):
            return core.error(400, limit)
        order = query.get("order", "desc")
        sort_by = query.get("sort_by", "created_at")
        if order not in ("asc", "desc") or sort_by not in _SORT_KEYS:
            return core.error(400, f"order must be asc or desc; sort_by one of {_SORT_KEYS}.")
        token = query.get("pagination_token") or ""
        start = decode_token(token, "files") if token else 0
        if start is None:
            return core.error(400, "pagination_token: not a token this list gave out.")
        live = [f for f in list(self._files.values()) if self.live(f.id) is not None]
        live.sort(
            key=lambda f: (
                len(f.data) if sort_by in ("bytes", "size") else getattr(f, sort_by),
                f.id,
            ),
            reverse=order == "desc",
        )
        page = live[start : start + limit]
        # The list "always returns a pagination_token": the end is a page shorter than limit.
        body = {
            "data": [f.to_json() for f in page],
            "pagination_token": encode_token("files", start + len(page)),
        }
        return json_answer(body)


def _content_answer(stored: StoredFile) -> web.Response:
    return web.Response(
        body=stored.data,
        content_type="application/octet-stream",
        headers={"x-request-id": str(uuid.uuid4())},
    )


async def _drain(part: BodyPartReader) -> None:
    while await part.read_chunk(1 << 16):
        pass
