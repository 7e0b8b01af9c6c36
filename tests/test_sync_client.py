"""The sync Client: the async core run on a private loop thread, from scripts, threads and loops."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

import xai_images
from xai_images import (
    BadRequestError,
    Client,
    ClientClosedError,
    ConfigurationError,
    DeferredRequest,
    GeneratedImage,
    ImagesResponse,
    ValidationError,
)
from xai_images._sync._models import (
    SyncDeferredRequest,
    SyncGeneratedImage,
    SyncImagesResponse,
)
from xai_images.testing import FakeXAIServer, Ledger, Reply


class ThreadedFake:
    """A FakeXAIServer on its own loop thread, so that blocking test code cannot starve it."""

    def __init__(self, server: FakeXAIServer, portal: BlockingPortal) -> None:
        self.server = server
        self.portal = portal

    def wait_for(self, predicate: Callable[[Ledger], bool]) -> None:
        self.portal.call(lambda: self.server.wait_for(predicate))

    def client(self, **kwargs: Any) -> Client:
        return Client(api_key=self.server.api_key, base_url=self.server.base_url, **kwargs)


@pytest.fixture
def fake() -> Iterator[ThreadedFake]:
    with start_blocking_portal() as portal:
        server = FakeXAIServer()
        portal.call(server.start)
        try:
            yield ThreadedFake(server, portal)
        finally:
            portal.call(server.stop)


def _threads_left(before: set[threading.Thread]) -> set[threading.Thread]:
    """Threads started since ``before`` that are still alive once they have had time to end.

    A stopped executor's worker threads exit on their own shortly after shutdown: join them
    (a thread's end can be waited for; nothing here sleeps).
    """
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=10)
    return {thread for thread in set(threading.enumerate()) - before if thread.is_alive()}


def _parts(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(".part")]


def _interrupt_main_when(fake: ThreadedFake, predicate: Callable[[Ledger], bool]) -> None:
    """Send SIGINT to the main thread (as Ctrl-C does) once the fake saw ``predicate`` hold."""
    main = threading.main_thread().ident
    assert main is not None

    def run() -> None:
        fake.wait_for(predicate)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=run, daemon=True).start()


def test_generate_and_save_in_a_script(fake: ThreadedFake, tmp_path: Path) -> None:
    """A plain blocking script generates and saves, with the async core's models and files."""
    with fake.client() as client:
        response = client.images.generate("a fox", n=2)
        saved = response.save(tmp_path)
    assert isinstance(response, SyncImagesResponse)
    assert all(isinstance(image, SyncGeneratedImage) for image in response.data)
    assert [s.path.exists() for s in saved] == [True, True]
    assert saved[0].path.read_bytes()[:4] == b"\x89PNG"
    assert response.usage is not None
    assert response.request_id == saved[0].request_id
    assert _parts(tmp_path) == []


def test_image_read_stream_and_save(fake: ThreadedFake, tmp_path: Path) -> None:
    """read(), iterating stream() and save() give the same bytes."""
    with fake.client() as client:
        image = client.images.generate("an owl").data[0]
        whole = image.read()
        streamed = b"".join(image.stream(chunk_size=1000))
        saved = image.save(tmp_path / "owl")
    assert whole == streamed == saved.path.read_bytes()
    assert saved.path.name == "owl.png"


def test_breaking_out_of_a_stream_frees_it(fake: ThreadedFake) -> None:
    """Leaving a stream early closes it; the client keeps working."""
    with fake.client() as client:
        image = client.images.generate("a lynx").data[0]
        for _chunk in image.stream(chunk_size=100):
            break
        assert len(image.read()) == fake.server.settings.image_bytes


def test_b64_images_hold_their_bytes(fake: ThreadedFake) -> None:
    """b64_json images carry their decoded bytes, as from the async client."""
    with fake.client() as client:
        image = client.images.generate("a hare", response_format="b64_json").data[0]
        assert image.content is not None
        assert image.read() == image.content
    assert fake.server.ledger.downloads() == []


def test_same_errors_as_async(fake: ThreadedFake) -> None:
    """Bad arguments raise ValidationError before sending; error statuses map the same way."""
    fake.server.enqueue(Reply.error(400))
    with fake.client() as client:
        with pytest.raises(ValidationError):
            client.images.generate("x", n=11)
        with pytest.raises(BadRequestError):
            client.images.generate("x")
    assert len(fake.server.ledger.api_requests()) == 1


def test_deferred_request_waits(fake: ThreadedFake) -> None:
    """A deferred request can be polled and waited for, blocking."""
    with fake.client() as client:
        request = client.images.generate_deferred("a heron")
        assert isinstance(request, SyncDeferredRequest)
        assert request.status().status == "pending"
        response = request.wait(poll_interval=0.01)
        status = client.images.get_deferred(request.request_id)
    assert len(response.images) == 1
    assert status.status == "done"
    assert status.response is not None


def test_threads_share_one_client(fake: ThreadedFake, tmp_path: Path) -> None:
    """Many threads share one client's limits, and each prompt is billed exactly once."""
    fake.server.settings.generation_latency = 0.02
    prompts = [f"prompt {i}" for i in range(24)]
    with fake.client(max_concurrent_requests=3) as client:

        def job(prompt: str) -> int:
            return len(client.images.generate(prompt).save(tmp_path / prompt.replace(" ", "-")))

        with ThreadPoolExecutor(8) as pool:
            counts = list(pool.map(job, prompts))
    ledger = fake.server.ledger
    assert counts == [1] * len(prompts)
    assert dict(ledger.billed_prompts) == dict.fromkeys(prompts, 1)
    assert ledger.peak_api_concurrency <= 3


def test_batch_iterates_outcomes(fake: ThreadedFake, tmp_path: Path) -> None:
    """client.bulk() is iterated with a plain for loop and counts its progress."""
    jobs = [{"prompt": f"item {i}", "id": f"item-{i}"} for i in range(5)]
    with fake.client() as client, client.bulk(jobs, output_dir=tmp_path) as run:
        outcomes = list(run)
    assert sorted(o.id for o in outcomes) == [f"item-{i}" for i in range(5)]
    assert all(o.ok and o.files[0].exists() for o in outcomes)
    assert run.progress.ok == 5
    assert "<progress" in run._repr_html_()


def test_call_inside_a_running_event_loop(fake: ThreadedFake) -> None:
    """A sync call from code running in an event loop works (no 'loop already running')."""
    with fake.client() as client:

        async def handler() -> str | None:
            return client.images.generate("from async code").request_id

        assert asyncio.run(handler()) is not None


def test_ctrl_c_during_save_cleans_up(fake: ThreadedFake, tmp_path: Path) -> None:
    """Ctrl-C during a save cancels it: no .part file, no extra thread; the client goes on."""
    fake.server.settings.image_bytes = 3_000_000
    with fake.client() as client:
        image = client.images.generate("a badger").data[0]
        image.save(tmp_path / "warm")  # starts the threads a save uses
        before = set(threading.enumerate())
        fake.server.enqueue_download(Reply.stall(0.5, seconds=30))
        started = fake.server.ledger.requests_started
        _interrupt_main_when(fake, lambda ledger: ledger.requests_started > started)
        with pytest.raises(KeyboardInterrupt):
            image.save(tmp_path / "interrupted")
        assert _parts(tmp_path) == []
        assert not (tmp_path / "interrupted.png").exists()
        assert _threads_left(before) == set()
        assert image.save(tmp_path / "again").path.exists()


def test_ctrl_c_during_generate_never_pays_twice(fake: ThreadedFake) -> None:
    """Ctrl-C after the POST was sent cancels it without resending; a later call works."""
    fake.server.enqueue(Reply.hang(30))
    with fake.client() as client:
        _interrupt_main_when(fake, lambda ledger: ledger.images_billed == 1)
        with pytest.raises(KeyboardInterrupt):
            client.images.generate("once only")
        assert client.images.generate("next").request_id is not None
    assert fake.server.ledger.billed_prompts["once only"] == 1


def test_ctrl_c_during_a_batch_records_it_and_a_rerun_never_pays_twice(
    fake: ThreadedFake, tmp_path: Path
) -> None:
    """Ctrl-C in a sync batch closes it with the sent item recorded; running it again skips it."""
    fake.server.enqueue(Reply.hang(30))
    jobs = [{"prompt": "sent then interrupted", "id": "first"}]
    with fake.client() as client:
        _interrupt_main_when(fake, lambda ledger: ledger.images_billed == 1)
        with pytest.raises(KeyboardInterrupt), client.bulk(jobs, output_dir=tmp_path) as run:
            list(run)
        assert run.progress.finished_at is not None  # the run ended: workers and manifest closed
        again = client.bulk(jobs, output_dir=tmp_path).collect()
    assert [(o.id, o.status, o.skipped) for o in again] == [("first", "unknown", True)]
    assert fake.server.ledger.billed_prompts["sent then interrupted"] == 1
    assert _parts(tmp_path) == []


def test_close_is_idempotent_and_final(fake: ThreadedFake) -> None:
    """close() twice is fine; afterwards calls raise ClientClosedError and the thread is gone."""
    before = set(threading.enumerate())
    client = fake.client()
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(ClientClosedError):
        client.images.generate("too late")
    with pytest.raises(ClientClosedError), client:
        pass
    assert _threads_left(before) == set()


def test_garbage_collected_client_stops_its_thread(fake: ThreadedFake) -> None:
    """A client dropped without close() stops its thread when it is collected."""
    before = set(threading.enumerate())
    client = fake.client()
    assert client.images.generate("dropped").request_id is not None
    del client
    gc.collect()
    assert _threads_left(before) == set()


def test_bad_configuration_leaves_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration error is raised as AsyncClient raises it, and no thread is left behind."""
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    before = set(threading.enumerate())
    with pytest.raises(ConfigurationError):
        Client()
    with pytest.raises(ConfigurationError):
        Client(api_key="k", session=object())  # type: ignore[arg-type]
    assert _threads_left(before) == set()


def test_unclosed_client_does_not_hang_exit(fake: ThreadedFake, tmp_path: Path) -> None:
    """A script that never closes its client exits promptly and cleanly."""
    script = (
        "import sys, xai_images\n"
        "client = xai_images.Client()\n"
        "print(len(client.images.generate('left open').save(sys.argv[1])))\n"
    )
    env = {
        **os.environ,
        "XAI_API_KEY": fake.server.api_key,
        "XAI_BASE_URL": fake.server.base_url,
    }
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "1\n", "")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_client_used_after_fork_fails_clearly(fake: ThreadedFake) -> None:
    """A client inherited through fork raises a clear error in the child instead of hanging."""
    script = (
        "import os, xai_images\n"
        "client = xai_images.Client()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        client.images.generate('in the child')\n"
        "    except RuntimeError as exc:\n"
        "        os._exit(3 if 'another process' in str(exc) else 4)\n"
        "    os._exit(5)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
        "client.close()\n"
    )
    env = {**os.environ, "XAI_API_KEY": fake.server.api_key, "XAI_BASE_URL": fake.server.base_url}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout) == (0, "3\n")


def test_proxies_expose_every_model_attribute() -> None:
    """Every public attribute of the async models is on their sync proxies too."""
    pairs = [
        (GeneratedImage, SyncGeneratedImage),
        (ImagesResponse, SyncImagesResponse),
        (DeferredRequest, SyncDeferredRequest),
    ]
    for model, proxy in pairs:
        public = {name for name in dir(model) if not name.startswith("_")}
        assert public <= set(dir(proxy)), (proxy.__name__, public - set(dir(proxy)))


def test_response_displays_as_thumbnails_fetched_once(fake: ThreadedFake) -> None:
    """A response renders as an HTML grid of embedded images; a second display fetches nothing."""
    with fake.client() as client:
        response = client.images.generate("a crane", n=2)
        first = response._repr_mimebundle_()
        arrived = fake.server.ledger.requests_started
        again = response._repr_mimebundle_()
        image = response.data[0]._repr_mimebundle_()
        arrived_after = fake.server.ledger.requests_started
    assert first["text/html"].count('<img src="data:image/png;base64,') == 2
    assert "A detailed, vivid rendering of: a crane" in first["text/html"]
    assert again == first
    # One generation and two downloads, all during the first display.
    assert arrived == arrived_after == 3
    assert "image/png" in image


def test_response_displays_after_its_client_closed(fake: ThreadedFake) -> None:
    """A sync response first displayed after close() shows its images by their URLs (no fetch)."""
    with fake.client() as client:
        response = client.images.generate("a kestrel")
    arrived = fake.server.ledger.requests_started
    shown = response._repr_mimebundle_()["text/html"]
    assert f'<img src="{response.data[0].url}"' in shown
    assert fake.server.ledger.requests_started == arrived


def test_async_image_displays_after_its_loop_ended(fake: ThreadedFake, tmp_path: Path) -> None:
    """An AsyncClient image displays even once its loop is gone (by its URL, no fetch)."""

    async def make() -> tuple[Any, Any]:
        async with xai_images.AsyncClient(
            api_key=fake.server.api_key, base_url=fake.server.base_url
        ) as client:
            response = await client.images.generate("a stork")
            saved = await response.data[0].save(tmp_path / "stork")
            return response, saved

    response, saved = asyncio.run(make())
    arrived = fake.server.ledger.requests_started
    url = response.data[0].url
    assert f'<img src="{url}"' in response.data[0]._repr_mimebundle_()["text/html"]
    assert f'<img src="{url}"' in response._repr_mimebundle_()["text/html"]
    assert fake.server.ledger.requests_started == arrived
    assert "image/png" in saved._repr_mimebundle_()
