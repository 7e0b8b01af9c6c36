"""AsyncClient configuration and lifecycle: key, base URL, session ownership, closing, timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from xai_images import AsyncClient, ClientClosedError, ConfigurationError, Timeout
from xai_images.testing import FakeXAIServer

KEY = "xai-SECRET-config-a1b2c3"


@pytest.fixture
def fake_xai_server_options() -> dict[str, Any]:
    """The fake requires this module's key."""
    return {"api_key": KEY}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    monkeypatch.delenv("XAI_BASE_URL", raising=False)


def test_no_key_anywhere_is_a_configuration_error() -> None:
    """Without api_key= or XAI_API_KEY, construction fails and names XAI_API_KEY."""
    with pytest.raises(ConfigurationError, match="XAI_API_KEY"):
        AsyncClient()


def test_blank_key_is_a_configuration_error() -> None:
    """A whitespace-only key counts as no key."""
    with pytest.raises(ConfigurationError, match="XAI_API_KEY"):
        AsyncClient("   ")


def test_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """XAI_API_KEY and XAI_BASE_URL are used when no arguments are given."""
    monkeypatch.setenv("XAI_API_KEY", KEY)
    monkeypatch.setenv("XAI_BASE_URL", "https://proxy.example.test/v1/")
    client = AsyncClient()
    assert client.base_url == "https://proxy.example.test/v1"
    assert client._key.get() == KEY


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """api_key= and base_url= override the environment variables."""
    monkeypatch.setenv("XAI_API_KEY", "env-key")
    monkeypatch.setenv("XAI_BASE_URL", "https://env.example.test/v1")
    client = AsyncClient(KEY, base_url="https://arg.example.test/v1")
    assert client.base_url == "https://arg.example.test/v1"
    assert client._key.get() == KEY


def test_default_base_url() -> None:
    """Without base_url or XAI_BASE_URL the client talks to api.x.ai."""
    assert AsyncClient(KEY).base_url == "https://api.x.ai/v1"


@pytest.mark.parametrize("url", ["api.x.ai/v1", "ftp://api.x.ai", "https://", "not a url"])
def test_bad_base_url_is_a_configuration_error(url: str) -> None:
    """A base URL that is not http(s) with a host fails at construction."""
    with pytest.raises(ConfigurationError, match="base_url"):
        AsyncClient(KEY, base_url=url)


def test_repr_shows_base_url_never_the_key() -> None:
    """repr(client) names the base URL; the key is nowhere in the repr of the client or its key."""
    client = AsyncClient(KEY, base_url="https://api.example.test/v1")
    assert "https://api.example.test/v1" in repr(client)
    assert KEY not in repr(client)
    assert KEY not in repr(vars(client))
    assert KEY not in repr(client.images)


def test_construction_needs_no_running_loop() -> None:
    """The client can be created in synchronous code; the session is made on first use."""
    client = AsyncClient(KEY)
    assert client._session is None


async def test_aclose_twice_is_fine() -> None:
    """aclose() is idempotent."""
    client = AsyncClient(KEY)
    client._require_session()
    await client.aclose()
    await client.aclose()
    assert client.closed


async def test_using_a_closed_client_raises(server: FakeXAIServer) -> None:
    """A call after aclose() raises ClientClosedError, a ConfigurationError and RuntimeError."""
    async with AsyncClient(KEY, base_url=server.base_url) as client:
        await client.images.generate("x")
    with pytest.raises(ClientClosedError, match="closed") as info:
        await client.images.generate("x")
    assert isinstance(info.value, ConfigurationError)
    assert isinstance(info.value, RuntimeError)
    assert server.ledger.api_requests()[-1].body == {"prompt": "x"}
    assert len(server.ledger.api_requests()) == 1


async def test_reentering_a_closed_client_raises() -> None:
    """async with on a closed client raises instead of silently reopening."""
    client = AsyncClient(KEY)
    await client.aclose()
    with pytest.raises(ClientClosedError):
        async with client:
            pass


async def test_owned_session_is_closed_by_aclose(server: FakeXAIServer) -> None:
    """The session the client created is closed when the client closes."""
    async with AsyncClient(KEY, base_url=server.base_url) as client:
        await client.images.generate("x")
        session = client._require_session()
    assert session.closed


async def test_injected_session_is_used_and_not_closed(server: FakeXAIServer) -> None:
    """A caller's session carries the requests and stays open after aclose()."""
    async with aiohttp.ClientSession() as session:
        async with AsyncClient(KEY, base_url=server.base_url, session=session) as client:
            resp = await client.images.generate("x")
        assert not session.closed
        assert resp.data[0].url
        # Still usable by its owner.
        async with session.get(server.origin + "/v1/images/unknown") as answer:
            assert answer.status in (400, 401, 404)


async def test_session_with_default_authorization_is_refused() -> None:
    """A caller's session with a default Authorization header would leak the key: refused."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer x"}) as session:
        with pytest.raises(ConfigurationError, match="Authorization"):
            AsyncClient(KEY, session=session)


def test_default_timeouts() -> None:
    """Defaults: 600 s for an API exchange, 10 s to connect."""
    assert AsyncClient(KEY).timeout == Timeout(request=600.0, connect=10.0)


def test_a_number_sets_the_request_timeout() -> None:
    """timeout=30 sets the request timeout and keeps the connect default."""
    assert AsyncClient(KEY, timeout=30).timeout == Timeout(request=30.0, connect=10.0)


@pytest.mark.parametrize("kwargs", [{"request": 0}, {"connect": -1}, {"request": True}])
def test_timeout_rejects_non_positive_values(kwargs: dict[str, object]) -> None:
    """Timeouts must be positive numbers or None."""
    with pytest.raises(ValueError, match="Timeout"):
        Timeout(**kwargs)  # type: ignore[arg-type]


def test_negative_max_retries_is_a_configuration_error() -> None:
    """max_retries=-1 fails at construction."""
    with pytest.raises(ConfigurationError, match="max_retries"):
        AsyncClient(KEY, max_retries=-1)


def test_max_retries_sets_the_attempts() -> None:
    """max_retries=N means N + 1 attempts; the default is 3 attempts."""
    assert AsyncClient(KEY).retry.max_attempts == 3
    assert AsyncClient(KEY, max_retries=0).retry.max_attempts == 1


async def test_programming_errors_are_not_disguised(server: FakeXAIServer) -> None:
    """A value that cannot be JSON-encoded raises TypeError, not a network error."""
    async with AsyncClient(KEY, base_url=server.base_url) as client:
        with pytest.raises(TypeError):
            await client.images.generate("x", extra_body={"when": object()})
    assert server.ledger.requests == []


async def test_a_used_and_closed_client_leaves_no_resource_warning(server: FakeXAIServer) -> None:
    """After aclose(), collecting the client emits no unclosed-session/connector warning."""
    import gc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = AsyncClient(KEY, base_url=server.base_url)
        await client.images.generate("x")
        await client.aclose()
        del client
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.parametrize(
    ("kwargs", "limit"),
    [
        ({"rate_limit": 0}, "rate_limit must be a positive finite number"),
        ({"rate_limit": -2.5}, "rate_limit must be a positive finite number"),
        ({"rate_limit": True}, "rate_limit must be a positive finite number"),
        ({"timeout": -1}, "timeout must be a positive number of seconds"),
        ({"timeout": 0}, "timeout must be a positive number of seconds"),
        ({"timeout": "30"}, "timeout must be a positive number of seconds"),
        ({"timeout": float("inf")}, "timeout must be a positive number of seconds"),
        ({"max_connections": -1}, "max_connections must be an int >= 0"),
        ({"max_concurrent_requests": 0}, "max_concurrent_requests must be an int >= 1"),
        ({"max_concurrent_requests": 2.5}, "max_concurrent_requests must be an int >= 1"),
        ({"max_retries": 1.5}, "max_retries must be an int >= 0"),
        ({"retry": 3}, "retry must be a RetryPolicy"),
        ({"download": {"concurrency": 2}}, "download must be a DownloadOptions"),
        ({"session": "not a session"}, "session must be an aiohttp.ClientSession"),
        ({"base_url": 443}, "base_url must be an http"),
    ],
    ids=lambda v: ",".join(f"{k}={v[k]!r}" for k in v) if isinstance(v, dict) else "msg",
)
def test_bad_constructor_arguments_are_configuration_errors(
    kwargs: dict[str, object], limit: str
) -> None:
    """Each bad argument raises ConfigurationError naming the argument and what it must be."""
    with pytest.raises(ConfigurationError, match=limit):
        AsyncClient(KEY, **kwargs)  # type: ignore[arg-type]


def test_a_non_string_key_is_refused_without_showing_it() -> None:
    """api_key of the wrong type is a ConfigurationError whose message does not contain it."""
    with pytest.raises(ConfigurationError, match="api_key must be a str") as info:
        AsyncClient(KEY.encode())  # type: ignore[arg-type]
    assert KEY not in str(info.value)


@pytest.mark.parametrize("value", [2.5, True, 0, -1, "3"])
def test_counts_are_refused_alike_everywhere(value: object) -> None:
    """A count that is a float, a bool, too small or a str is refused by every config class."""
    from xai_images import DownloadOptions, RetryPolicy

    with pytest.raises(ValueError, match="concurrency"):
        DownloadOptions(concurrency=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_concurrent_requests"):
        AsyncClient("key", max_concurrent_requests=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, 0, -1.0, float("nan"), float("inf"), "1"])
def test_positive_numbers_are_refused_alike_everywhere(value: object) -> None:
    """A time or rate that is a bool, not positive, not finite or a str is refused everywhere."""
    from xai_images import DownloadOptions, RetryPolicy

    with pytest.raises(ValueError, match="request"):
        Timeout(request=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stall_timeout"):
        DownloadOptions(stall_timeout=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_elapsed"):
        RetryPolicy(max_elapsed=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="rate_limit"):
        AsyncClient("key", rate_limit=value)  # type: ignore[arg-type]


async def test_aclose_shuts_the_writer_threads_down(server: FakeXAIServer, tmp_path: Path) -> None:
    """The client's writer pool stops in aclose(); images in hand can still be saved after."""
    client = AsyncClient(KEY, base_url=server.base_url)
    resp = await client.images.generate("a fox", response_format="b64_json")
    png = (await resp.data[0].save(tmp_path / "a")).path.read_bytes()
    assert client._writers.executor() is not None
    await client.aclose()
    assert client._writers.executor() is None
    saved = await resp.data[0].save(tmp_path / "b")
    assert saved.path.read_bytes() == png
