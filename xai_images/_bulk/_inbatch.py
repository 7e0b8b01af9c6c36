"""The items a Batch API job has in its batch and has not settled, kept off the heap.

Between its add call and its result (minutes to hours later) an item needs nothing in memory.
`InBatch` writes each one's request and spending reservation to a spill file (an unnamed
temporary file in the manifest's directory: nothing to clean up, it is gone once closed or once
the process ends) and keeps only a 64-bit hash of its id and the offset of its record, in the
flat tables of ``_jobstate.py`` (22 to 44 bytes an item, where the `Item` and its request take
about 600). When a page of results names held items, their records are read back in one trip
to a worker thread and come back as `Item` values again. The file is written and read only in
worker threads, never on the event loop.

A record is a pickle of the id, the reservation, the request's class and its field values: the
request comes back equal to the one read from the job, line number and base directory
included. The file is this process's own (unnamed, created here), so what is unpickled is what
this process wrote. A record that cannot be pickled (a `Spend` whose reservations are not
picklable, a request holding an unpicklable input) stays in memory instead.

Ids are told apart by their hashes: a job's ids have distinct hashes (``name_job`` gives no id
whose hash it already gave), and an id from elsewhere whose hash matches a held one is told
apart when its record is read (the record names its id).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import pickle
import struct
import tempfile
import threading
from array import array
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from ._jobstate import KeyTable, _key
from ._tally import Item, Tally

__all__ = ["PAGE", "InBatch"]

_HEADER = struct.Struct("<Q")  # the length of the pickle that follows
PAGE = 256
"""Items read back (or written) in one trip to a worker thread, when the caller chooses."""

# What a record holds: id, reservation, request class, request field values.
_Record = tuple[str, object, type, tuple[Any, ...]]


class InBatch:
    """Items held by the batch and not settled: id hash -> where the item can be read back.

    Args:
        directory: where the spill file is created (the manifest's directory), on first use.
        tally: the run's, given to the items read back.
    """

    def __init__(self, directory: Path, tally: Tally) -> None:
        self._directory = directory
        self._tally = tally
        self._offsets = KeyTable()  # id hash -> offset of its record
        self._exact: dict[str, int] = {}  # held ids whose hash another held id has (rare)
        self._unspilled: dict[int, _Record] = {}  # negative offsets: records kept in memory
        self._next_unspilled = -1
        self._fh: IO[bytes] | None = None
        self._size = 0
        self._lock = threading.Lock()  # the file's position and size (worker threads)

    def __len__(self) -> int:
        return len(self._offsets) + len(self._exact)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self._offset(item_id) is not None

    async def spill(self, items: Sequence[Item]) -> list[int]:
        """Write the records of ``items`` (in a worker thread); their offsets, for `hold`."""
        if not items:
            return []
        # (Requests are immutable: their fields are read in the worker thread.)
        return await asyncio.to_thread(
            self._write, [(item.id, item.reservation, item.request) for item in items]
        )

    def hold(self, item_id: str, offset: int) -> None:
        """The batch holds ``item_id``, whose record `spill` wrote at ``offset``."""
        key = _key(item_id)
        if item_id in self._exact or self._offsets.get(key) is not None:
            self._exact[item_id] = offset  # two held ids, one hash
        else:
            self._offsets.put(key, offset)

    async def join(self, items: Sequence[Item]) -> None:
        """`spill` and `hold` ``items`` (items the batch already holds)."""
        for item, offset in zip(items, await self.spill(items), strict=True):
            self.hold(item.id, offset)

    def discard(self, item_id: str) -> None:
        """``item_id`` (held) is settled."""
        offset = self._exact.pop(item_id, None)
        if offset is None:
            key = _key(item_id)
            offset = self._offsets.get(key)
            self._offsets.pop(key)
        if offset is not None and offset < 0:
            self._unspilled.pop(offset, None)

    async def take(self, ids: Iterable[str]) -> list[Item]:
        """The held items among ``ids``, read back (one trip to a worker thread)."""
        wanted = [
            (offset, item_id) for item_id in ids if (offset := self._offset(item_id)) is not None
        ]
        if not wanted:
            return []
        items = await asyncio.to_thread(self._read, [offset for offset, _ in wanted])
        return [
            item
            for item, (_, item_id) in zip(items, wanted, strict=True)
            if item is not None and item.id == item_id
        ]

    async def every(self) -> AsyncIterator[list[Item]]:
        """Every held item, read back in pages (those settled meanwhile left out)."""
        # (Lazily: each table's offsets are copied when reached.)
        for offsets in itertools.chain([array("q", self._exact.values())], self._offsets.values()):
            for start in range(0, len(offsets), PAGE):
                page = offsets[start : start + PAGE]
                items = await asyncio.to_thread(self._read, page)
                yield [
                    item
                    for item, offset in zip(items, page, strict=True)
                    if item is not None and self._offset(item.id) == offset
                ]

    def close(self) -> None:
        """Close (and so delete) the spill file; blocking: call in a worker thread."""
        with self._lock:
            fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()

    def _offset(self, item_id: str) -> int | None:
        offset = self._exact.get(item_id)
        return offset if offset is not None else self._offsets.get(_key(item_id))

    def _write(self, items: Sequence[tuple[str, object, Any]]) -> list[int]:
        offsets: list[int] = []
        with self._lock:
            if self._fh is None:
                # Unnamed (or unlinked at once): nothing is left behind, whatever happens.
                self._fh = tempfile.TemporaryFile(  # noqa: SIM115 (closed by `close`)
                    dir=self._directory, prefix=".xai-images-"
                )
            fh = self._fh
            fh.seek(self._size)
            # Record by record through the file's buffer: no big blob of the whole call.
            for item_id, reservation, request in items:
                record = (
                    item_id,
                    reservation,
                    type(request),
                    attrs.astuple(request, recurse=False),
                )
                try:
                    blob = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
                except (pickle.PicklingError, TypeError, AttributeError):
                    offsets.append(self._next_unspilled)
                    self._unspilled[self._next_unspilled] = record
                    self._next_unspilled -= 1
                    continue
                offsets.append(self._size)
                fh.write(_HEADER.pack(len(blob)))
                fh.write(blob)
                self._size += _HEADER.size + len(blob)
            fh.flush()
        return offsets

    def _read(self, offsets: Sequence[int]) -> list[Item | None]:
        """The items at ``offsets`` (``None`` for one kept in memory and settled since)."""
        records: list[_Record | None] = []
        with self._lock:
            fh = self._fh
            for offset in offsets:
                if offset < 0:
                    records.append(self._unspilled.get(offset))
                    continue
                assert fh is not None
                fh.seek(offset)
                (length,) = _HEADER.unpack(fh.read(_HEADER.size))
                records.append(pickle.loads(fh.read(length)))  # (written by this process)
        return [
            None
            if record is None
            else Item(record[0], _rebuilt(record), self._tally, reservation=record[1], held=True)
            for record in records
        ]


@functools.cache
def _aliases(cls: type) -> tuple[str, ...]:
    return tuple(field.alias for field in attrs.fields(cls))


def _rebuilt(record: _Record) -> Any:
    """The request of a record (its fields are set through ``__init__``, by name)."""
    cls, values = record[2], record[3]
    return cls(**dict(zip(_aliases(cls), values, strict=True)))
