"""The blocking Client has every public member of AsyncClient, its resources' included."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

import xai_images
from xai_images import AsyncClient, Client, GenerateRequest
from xai_images.bulk import BatchLimits
from xai_images.hooks import RequestSent
from xai_images.testing import FakeClock, FakeXAIServer

# Members that are async by nature and have a differently named blocking twin.
RENAMED = {"aclose": "close"}


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def _is_resource(value: object) -> bool:
    return type(value).__module__.startswith("xai_images._api.")


def _missing(core: object, sync: object, where: str) -> list[str]:
    """Public members of ``core`` that ``sync`` lacks (or offers as a coroutine), recursively
    into resources."""
    missing = []
    for name in sorted(_public(core)):
        twin = RENAMED.get(name, name)
        if not hasattr(sync, twin):
            missing.append(f"{where}.{twin}")
            continue
        value, sync_value = getattr(core, name), getattr(sync, twin)
        if _is_resource(value):
            missing += _missing(value, sync_value, f"{where}.{name}")
        elif callable(value) != callable(sync_value):
            missing.append(f"{where}.{twin} (callable on one client only)")
        elif inspect.iscoroutinefunction(sync_value) or inspect.isasyncgenfunction(sync_value):
            missing.append(f"{where}.{twin} (not blocking)")
    return missing


@pytest.fixture
def clients() -> Iterator[tuple[AsyncClient, Client]]:
    core = AsyncClient(api_key="k", base_url="http://127.0.0.1:9")
    sync = Client(api_key="k", base_url="http://127.0.0.1:9")
    try:
        yield core, sync
    finally:
        sync.close()


def test_sync_client_has_every_member_of_the_async_client(
    clients: tuple[AsyncClient, Client],
) -> None:
    """Every public attribute and method of AsyncClient and of its resources is on Client."""
    core, sync = clients
    assert _missing(core, sync, "client") == []
    assert {"images", "batches", "files", "bulk", "add_event_hook"} <= _public(sync)


def test_the_comparison_recurses_into_resources(clients: tuple[AsyncClient, Client]) -> None:
    """A method missing on a sync resource is reported (the check itself can fail)."""
    core, _sync = clients

    class Bare:
        images = object()

    assert "client.images.generate" in _missing(core, Bare(), "client")


def test_a_method_added_to_a_core_resource_is_bridged_without_code() -> None:
    """A subclass of SyncResource bridges every public method of its core class by itself."""
    from xai_images._sync._bridge import SyncResource

    class Core:
        async def ping(self, value: int) -> int:
            return value + 1

        async def stream(self) -> Any:
            yield 1
            yield 2

    class SyncCore(SyncResource[Core], core=Core):
        __slots__ = ()

    with Client(api_key="k", base_url="http://127.0.0.1:9") as client:
        resource = SyncCore(client, Core())
        assert resource.ping(1) == 2
        assert list(resource.stream()) == [1, 2]


@pytest.fixture
def server() -> Iterator[FakeXAIServer]:
    with start_blocking_portal() as portal:
        fake = FakeXAIServer(image_bytes=512, clock=FakeClock(), batch_create_limit=None)
        portal.call(fake.start)
        try:
            yield fake
        finally:
            portal.call(fake.stop)


def test_sync_batches_files_and_hooks_work(server: FakeXAIServer) -> None:
    """client.files, client.batches and the event hooks of the blocking Client do their job."""
    seen: list[str] = []

    def hook(event: Any) -> None:
        if isinstance(event, RequestSent):
            seen.append(event.path)

    with Client(api_key=server.api_key, base_url=server.base_url) as client:
        client.add_event_hook(hook)
        stored = client.files.upload(b'{"a": 1}\n', filename="x.jsonl", expires_after=3600)
        assert client.files.get(stored.id).id == stored.id
        batch = client.batches.create("parity")
        client.batches.add(batch.batch_id, [GenerateRequest("a fox", id="fox")])
        assert client.batches.request_ids(batch.batch_id) == {"fox"}
        assert [b.batch_id for b in client.batches.list()] == [batch.batch_id]
        client.remove_event_hook(hook)
        client.batches.get(batch.batch_id)
    assert "/v1/files" in seen
    assert f"/v1/batches/{batch.batch_id}" not in seen


def test_sync_results_are_sync_proxies(server: FakeXAIServer, tmp_path: Any) -> None:
    """A batch result's response from the blocking Client saves without await."""
    with Client(api_key=server.api_key, base_url=server.base_url) as client:
        client.batches.limits = BatchLimits(creates_per_second=1000)
        batch = client.batches.create("results")
        client.batches.add(batch.batch_id, [GenerateRequest("a heron", id="heron")])
        page = client.batches.results(batch.batch_id)
        assert [result.batch_request_id for result in page.results] == ["heron"]
        for result in page.results:
            assert result.response is not None
            saved = result.response.save(tmp_path)
            assert saved[0].path.exists()
    assert isinstance(page, xai_images._sync._models.SyncResultsPage)


def test_sync_proxies_have_every_member_of_their_models() -> None:
    """What the sync client returns has every public member of the async model it wraps."""
    from xai_images._api._batch_models import BatchResult, ResultsPage
    from xai_images._sync import _models as sync

    pairs = [
        (xai_images.GeneratedImage, sync.SyncGeneratedImage),
        (xai_images.ImagesResponse, sync.SyncImagesResponse),
        (xai_images.DeferredRequest, sync.SyncDeferredRequest),
        (xai_images.DeferredStatus, sync.SyncDeferredStatus),
        (BatchResult, sync.SyncBatchResult),
        (ResultsPage, sync.SyncResultsPage),
    ]
    for model, proxy in pairs:
        missing = _public(model) - _public(proxy)
        assert missing == set(), (proxy.__name__, sorted(missing))
