"""What a bulk job remembers between runs and about items not in flight, in compact form.

`load_job_state` reads a manifest once (in a worker thread) into a `JobState`: an index from
each item's id to the offset of its latest record line (the record itself is read back from the
file when the job reaches that item) and the run records of the Batch API source. `IdSet`
remembers the ids a run has seen. Both keep a 64-bit hash per id in flat arrays instead of the
id and its record: a job of a million items needs about 20 MB for them, not gigabytes.

Run records (lines with a ``"record"`` key, ``fsync``-ed), written by the Batch API source
before and after each remote step:

- ``{"record": "run", "run_id"}``: before the batch is created (its name is the run id, so a
  create whose answer was lost is found again by name).
- ``{"record": "batch", "run_id", "batch_id"}``: once the batch exists.
- ``{"record": "adding", "batch_id", "ids"}``: before an add call; ``{"record": "added", ...}``
  once the batch holds those ids (after the call, or after listing the batch's requests).
- ``{"record": "refused", "batch_id", "ids"}``: the API refused an add call (400 or 413), so
  none of those ids is in the batch.
- ``{"record": "cancel", "batch_id"}``: a cancel was asked for.
- ``{"record": "closed", "batch_id"}``: every item of the batch is settled; a later run with
  work to do starts a new batch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs

from .._results._safefs import open_read
from ._manifest import _UNREADABLE, RUN_RECORD_KEY, ManifestRecord, parse_line

__all__ = ["Found", "IdSet", "JobState", "KeyTable", "RunState", "load_job_state"]

# What `JobState.lookup` finds of an item: (offset, its latest record), and whether its files
# are intact (``None``: not checked).
Found = tuple[tuple[int, ManifestRecord], bool | None]

logger = logging.getLogger("xai_images")


def _key(item_id: str) -> int:
    """A non-zero 64-bit hash of an id (blake2b: stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


class _Shard:
    """An open-addressing hash table of non-zero 64-bit keys (and, with ``values``, 64-bit
    values) in flat arrays, at most three quarters full: 11 to 22 bytes a key, as much again a
    value, where a ``set`` of
    ``int`` takes about 75 bytes a key and a ``dict`` about 100."""

    def __init__(self, size: int = 8, *, values: bool = True) -> None:
        self.keys = array("Q", bytes(8 * size))
        self.values = array("q", bytes(8 * size)) if values else None
        self.used = 0

    def slot(self, key: int) -> int:
        keys, mask = self.keys, len(self.keys) - 1
        slot = key & mask
        while keys[slot] not in (0, key):
            slot = (slot + 1) & mask
        return slot

    def get(self, key: int) -> int | None:
        slot = self.slot(key)
        if not self.keys[slot]:
            return None
        return self.values[slot] if self.values is not None else 0

    def put(self, key: int, value: int) -> None:
        slot = self.slot(key)
        if not self.keys[slot]:
            if 4 * (self.used + 1) > 3 * len(self.keys):
                self.rebuild(2 * len(self.keys))
                slot = self.slot(key)
            self.keys[slot] = key
            self.used += 1
        if self.values is not None:
            self.values[slot] = value

    def remove(self, key: int) -> None:
        """Remove ``key`` if present, moving back the entries probed past its slot (no
        tombstones: a lookup stays as short as in a table that never held it)."""
        keys, values, mask = self.keys, self.values, len(self.keys) - 1
        hole = self.slot(key)
        if not keys[hole]:
            return
        probe = (hole + 1) & mask
        while keys[probe]:
            # The entry at `probe` may fill the hole if the hole lies on its probe path.
            if (probe - keys[probe]) & mask >= (probe - hole) & mask:
                keys[hole] = keys[probe]
                if values is not None:
                    values[hole] = values[probe]
                hole = probe
            probe = (probe + 1) & mask
        keys[hole] = 0
        if values is not None:
            values[hole] = 0
        self.used -= 1

    def rebuild(self, size: int) -> None:
        values = self.values if self.values is not None else [0] * len(self.keys)
        entries = [(k, v) for k, v in zip(self.keys, values, strict=True) if k]
        self.keys = array("Q", bytes(8 * size))
        if self.values is not None:
            self.values = array("q", bytes(8 * size))
        self.used = 0
        for k, v in entries:
            self.put(k, v)


class KeyTable:
    """`_Shard` tables by the key's top byte, so that growing one (copying its entries in
    Python) stays short on the event loop however many keys there are."""

    def __init__(self, *, values: bool = True) -> None:
        self._shards = [_Shard(values=values) for _ in range(256)]

    def __len__(self) -> int:
        return sum(shard.used for shard in self._shards)

    def get(self, key: int) -> int | None:
        """The value of ``key`` (0 in a table without values), or ``None``."""
        return self._shards[key >> 56].get(key)

    def put(self, key: int, value: int = 0) -> None:
        """Set ``key`` to ``value``."""
        self._shards[key >> 56].put(key, value)

    def pop(self, key: int) -> None:
        """Remove ``key`` (if present)."""
        self._shards[key >> 56].remove(key)

    def values(self) -> Iterator[array[int]]:
        """The values of the keys, one table (1/256 of them) at a time, each copied when
        reached: walking a big table takes many short steps, not one long one."""
        for shard in self._shards:
            if shard.values is not None and shard.used:
                keys = shard.keys
                yield array("q", (v for k, v in zip(keys, shard.values, strict=True) if k))


class IdSet:
    """A set of ids held as 64-bit hashes in flat tables (11 to 22 bytes an id).

    Two different ids share a hash with a chance of about n**2 / 2**65 (3 in 100 million for a
    million ids); a collision can only make a unique id look taken, never lose or repeat work.
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._table = KeyTable(values=False)
        for item_id in ids:
            self.add(item_id)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self._table.get(_key(item_id)) is not None

    def __len__(self) -> int:
        return len(self._table)

    def add(self, item_id: str) -> None:
        """Remember ``item_id``."""
        self._table.put(_key(item_id))

    def update(self, ids: Iterable[str]) -> None:
        """Remember every id of ``ids``."""
        for item_id in ids:
            self.add(item_id)

    def discard(self, item_id: str) -> None:
        """Forget ``item_id``."""
        self._table.pop(_key(item_id))


@attrs.define
class RunState:
    """One run (one batch) of the Batch API source as its records describe it.

    ``offset``: where its ``run`` record starts in the manifest (item records before it are
    older than the run). ``added`` (ids the batch holds) is an `IdSet` of hashes, so that a
    batch of a million requests takes megabytes; only the ids in doubt (an add call started
    and not settled) are kept whole.
    """

    run_id: str
    offset: int
    batch_id: str | None = None
    added: IdSet = attrs.Factory(IdSet)
    cancel_requested: bool = False
    closed: bool = False
    accepts_adds: bool = True
    _doubt: set[str] = attrs.Factory(set)

    def holds(self, item_id: str) -> bool:
        """Whether an add call for ``item_id`` was made and not refused (the batch holds it,
        or may: see `in_doubt`)."""
        return item_id in self._doubt or item_id in self.added

    @property
    def in_doubt(self) -> set[str]:
        """Ids of add calls that started but were not confirmed (a crash in between)."""
        return set(self._doubt)

    def adding(self, ids: Iterable[str]) -> None:
        """An add call for ``ids`` starts (recorded ``adding``)."""
        self._doubt.update(ids)

    def landed(self, ids: Iterable[str]) -> None:
        """The batch holds ``ids`` (recorded ``added``)."""
        for item_id in ids:
            self.added.add(item_id)
            self._doubt.discard(item_id)

    def confirmed(self, ids: Iterable[str]) -> None:
        """This run's add call for ``ids`` landed (recorded ``added``): they leave doubt, and
        `added` does not grow by them. The run reads each id of the job once, so it never asks
        about them again; a later run reads them from the records (`landed`)."""
        for item_id in ids:
            self._doubt.discard(item_id)

    def refused(self, ids: Iterable[str]) -> None:
        """None of ``ids`` is in the batch (recorded ``refused``)."""
        for item_id in ids:
            self.added.discard(item_id)
            self._doubt.discard(item_id)


class JobState:
    """A manifest read back: where the latest record of each item is, and the runs.

    Records are read from the file on demand (`record`); call `close` when done.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = path
        self.runs: list[RunState] = []
        self._offsets = KeyTable()  # id hash -> offset of the latest record
        self._exact: dict[str, int] = {}  # ids whose hash another id shares (rare)
        self._fh: IO[bytes] | None = None

    def __len__(self) -> int:
        return len(self._offsets) + len(self._exact)

    @property
    def open_run(self) -> RunState | None:
        """The last run, unless it is closed."""
        if self.runs and not self.runs[-1].closed:
            return self.runs[-1]
        return None

    def record(self, item_id: str) -> tuple[int, ManifestRecord] | None:
        """The latest record of ``item_id`` and the offset of its line, or ``None``.

        Reads one line of the manifest (a short read from the page cache in practice).
        """
        offset = self._exact.get(item_id)
        if offset is None:
            offset = self._offsets.get(_key(item_id))
        if offset is None:
            return None
        record = self._read_at(offset)
        if record is None or record.id != item_id:
            return None
        return offset, record

    def lookup(self, ids: Iterable[str], intact_in: Path | None = None) -> dict[str, Found]:
        """The latest records of ``ids`` that have one (blocking: call in a worker thread),
        each with, given ``intact_in`` (the output directory) and an ``ok`` record, whether
        its files are there with their recorded sizes (`ManifestRecord.files_intact`)."""
        out: dict[str, Found] = {}
        for item_id in ids:
            if (found := self.record(item_id)) is not None:
                intact = None
                if intact_in is not None and found[1].status == "ok":
                    intact = found[1].files_intact(intact_in)
                out[item_id] = (found, intact)
        return out

    def close(self) -> None:
        """Close the manifest file (idempotent)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()

    def _read_at(self, offset: int) -> ManifestRecord | None:
        if self._fh is None:
            assert self.path is not None
            self._fh = open_read(self.path, what="manifest")
        self._fh.seek(offset)
        raw = self._fh.readline()
        try:
            return ManifestRecord.from_json(parse_line(raw))
        except _UNREADABLE:
            return None

    def _index(self, item_id: str, offset: int) -> None:
        if item_id in self._exact:
            self._exact[item_id] = offset
            return
        key = _key(item_id)
        earlier = self._offsets.get(key)
        if earlier is not None:
            other = self._read_at(earlier)
            if other is not None and other.id != item_id:
                # Two ids, one hash: both are kept by their full id from now on.
                self._offsets.pop(key)
                self._exact[other.id] = earlier
                self._exact[item_id] = offset
                return
        self._offsets.put(key, offset)


def load_job_state(path: str | os.PathLike[str]) -> JobState:
    """Index a manifest's item records and read its run records (blocking: call in a thread).

    A final line without its newline (a crash mid-line) is ignored; any other unreadable line is
    skipped with a warning on the ``xai_images`` logger; a missing file is an empty state.

    Raises:
        SaveError: the manifest path is a symbolic link or not a regular file.
        OSError: it cannot be read.
    """
    state = JobState(path)
    try:
        fh = open_read(path, what="manifest")
    except FileNotFoundError:
        return state
    by_batch: dict[str, RunState] = {}
    with fh:
        offset = 0
        for number, raw in enumerate(fh, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.endswith(b"\n") or not raw.strip():
                continue
            try:
                data = parse_line(raw)
                if RUN_RECORD_KEY in data:
                    _apply_run_record(state, by_batch, data, start)
                else:
                    state._index(ManifestRecord.from_json(data).id, start)
            except _UNREADABLE as exc:
                logger.warning("manifest %s: skipping unreadable line %d: %s", path, number, exc)
    return state


def _apply_run_record(
    state: JobState, by_batch: dict[str, RunState], data: dict[str, Any], offset: int
) -> None:
    kind = data[RUN_RECORD_KEY]
    if kind == "run":
        state.runs.append(RunState(str(data["run_id"]), offset))
        return
    batch_id = data.get("batch_id")
    if kind == "batch":
        run = next((r for r in reversed(state.runs) if r.run_id == data.get("run_id")), None)
        if run is None:
            run = RunState(str(data.get("run_id") or batch_id), offset)
            state.runs.append(run)
        run.batch_id = str(batch_id)
        by_batch[run.batch_id] = run
        return
    run = by_batch.get(str(batch_id))
    if run is None:
        return
    ids = [str(i) for i in data.get("ids") or ()]
    if kind == "adding":
        run.adding(ids)
    elif kind == "added":
        run.landed(ids)
    elif kind == "refused":
        run.refused(ids)
    elif kind == "cancel":
        run.cancel_requested = True
    elif kind == "closed":
        run.closed = True
