"""The fake's Batch and Files APIs, exercised through plain aiohttp requests."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest

from xai_images.testing import FakeClock, FakeXAIServer, Reply

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def fake_xai_server_options(clock: FakeClock) -> dict[str, Any]:
    """The fake runs on a clock the tests move by hand."""
    return {"clock": clock}


async def call(
    session: aiohttp.ClientSession,
    server: FakeXAIServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: bool = True,
    **kwargs: Any,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """Send a request with the server's key; return (status, decoded JSON or None, response)."""
    headers = {"Authorization": f"Bearer {server.api_key}"} if key else {}
    if body is not None:
        kwargs["json"] = body
    async with session.request(
        method, server.base_url + path, headers=headers, **kwargs
    ) as response:
        raw = await response.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return response.status, data, response


async def create(
    session: aiohttp.ClientSession, server: FakeXAIServer, clock: FakeClock, **body: Any
) -> dict[str, Any]:
    """Create a batch (moving the clock past the creation limit first)."""
    clock.advance(1)
    status, data, _ = await call(session, server, "POST", "/batches", {"name": "run", **body})
    assert status == 200, data
    result: dict[str, Any] = data
    return result


def gen(request_id: str | None, prompt: str = "a red fox", **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"batch_request": {"image_generation": {"prompt": prompt, **fields}}}
    if request_id is not None:
        item["batch_request_id"] = request_id
    return item


async def add(
    session: aiohttp.ClientSession, server: FakeXAIServer, batch_id: str, *items: dict[str, Any]
) -> tuple[int, Any]:
    status, data, _ = await call(
        session, server, "POST", f"/batches/{batch_id}/requests", {"batch_requests": list(items)}
    )
    return status, data


async def get_batch(
    session: aiohttp.ClientSession, server: FakeXAIServer, batch_id: str
) -> dict[str, Any]:
    status, data, _ = await call(session, server, "GET", f"/batches/{batch_id}")
    assert status == 200, data
    result: dict[str, Any] = data
    return result


async def all_pages(
    session: aiohttp.ClientSession, server: FakeXAIServer, path: str, key: str, limit: int
) -> tuple[list[Any], int]:
    """Page through a list until the token ends it; return the items and the page count."""
    items: list[Any] = []
    token: str | None = None
    pages = 0
    while True:
        query = f"?limit={limit}" + (f"&pagination_token={token}" if token else "")
        status, data, _ = await call(session, server, "GET", path + query)
        assert status == 200, data
        items += data[key]
        pages += 1
        token = data.get("pagination_token")
        if not token:
            return items, pages


async def upload(
    session: aiohttp.ClientSession,
    server: FakeXAIServer,
    content: bytes,
    *,
    expires_after: str | None = "86400",
    expires_first: bool = True,
    with_file: bool = True,
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    if expires_after is not None and expires_first:
        form.add_field("expires_after", expires_after)
    if with_file:
        form.add_field("file", content, filename="jobs.jsonl", content_type="application/jsonl")
    if expires_after is not None and not expires_first:
        form.add_field("expires_after", expires_after)
    if not with_file and expires_after is None:
        form.add_field("purpose", "batch")
    status, data, _ = await call(session, server, "POST", "/files", data=form)
    return status, data


def line(custom_id: str, prompt: str = "a red fox", **body: Any) -> str:
    return json.dumps(
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"prompt": prompt, **body},
        }
    )


# --- auth -----------------------------------------------------------------------------------------

ROUTES = [
    ("POST", "/batches"),
    ("GET", "/batches"),
    ("GET", "/batches/batch_x"),
    ("POST", "/batches/batch_x/requests"),
    ("GET", "/batches/batch_x/requests"),
    ("GET", "/batches/batch_x/results"),
    ("POST", "/batches/batch_x:cancel"),
    ("POST", "/files"),
    ("GET", "/files"),
    ("GET", "/files/file_x"),
    ("DELETE", "/files/file_x"),
    ("GET", "/files/file_x/content"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_needs_the_key(
    server: FakeXAIServer, session: Any, method: str, path: str
) -> None:
    """Every Batch and Files route answers 401 without an Authorization header."""
    status, body, _ = await call(session, server, method, path, key=False)
    assert status == 401
    assert set(body) == {"code", "error"}


# --- batches --------------------------------------------------------------------------------------


async def test_create_answers_the_batch_object(server: FakeXAIServer, session: Any) -> None:
    """A new batch has a batch_<uuid> id, RFC 3339 times, zero counters and no status field."""
    status, batch, _ = await call(session, server, "POST", "/batches", {"name": "nightly"})
    assert status == 200
    assert re.fullmatch("batch_" + UUID, batch["batch_id"])
    assert batch["name"] == "nightly"
    assert re.fullmatch(RFC3339, batch["create_time"])
    assert re.fullmatch(RFC3339, batch["expire_time"])
    assert batch["cancel_time"] is None
    assert batch["cancel_by_xai_message"] is None
    assert batch["input_file_id"] is None
    assert server.api_key not in json.dumps(batch)
    assert batch["state"] == dict.fromkeys(
        ["num_requests", "num_pending", "num_success", "num_error", "num_cancelled"], 0
    )
    assert "status" not in batch
    assert server.ledger.batches_created == 1


async def test_bare_date_times(server: FakeXAIServer, session: Any) -> None:
    """batch_time_format='date' writes timestamps as bare YYYY-MM-DD strings."""
    server.settings.batch_time_format = "date"
    _, batch, _ = await call(session, server, "POST", "/batches", {"name": "x"})
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", batch["create_time"])


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": 5}, {"name": "x", "input_file_id": 3}])
async def test_create_without_a_name_gets_400(
    server: FakeXAIServer, session: Any, body: dict[str, Any]
) -> None:
    """A missing, empty or mistyped name (or file id) is refused with 400."""
    status, _, _ = await call(session, server, "POST", "/batches", body)
    assert status == 400


async def test_creations_over_the_limit_get_429(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A second creation within a second gets 429 with Retry-After; a second later it works."""
    status, _, _ = await call(session, server, "POST", "/batches", {"name": "a"})
    assert status == 200
    status, _, response = await call(session, server, "POST", "/batches", {"name": "b"})
    assert status == 429
    assert response.headers["Retry-After"] == "1"
    assert server.ledger.rate_limited == 1
    clock.advance(1)
    status, _, _ = await call(session, server, "POST", "/batches", {"name": "b"})
    assert status == 200
    assert server.ledger.batches_created == 2


async def test_unknown_batch_gets_404(server: FakeXAIServer, session: Any) -> None:
    """Every route of a batch id that does not exist answers 404."""
    for method, path in ROUTES[2:7]:
        body = {"batch_requests": [gen("a")]} if path.endswith("requests") else None
        status, data, _ = await call(
            session, server, method, path, body if method == "POST" else None
        )
        assert status == 404, (method, path)
        assert "batch_x" in data["error"]


async def test_list_batches_in_pages(server: FakeXAIServer, session: Any, clock: FakeClock) -> None:
    """GET /v1/batches pages with opaque tokens and ends with a null token."""
    ids = [(await create(session, server, clock, name=f"run-{i}"))["batch_id"] for i in range(3)]
    batches, pages = await all_pages(session, server, "/batches", "batches", 2)
    assert [b["batch_id"] for b in batches] == ids
    assert pages == 2


@pytest.mark.parametrize("mark", ["null", "empty", "absent"])
async def test_last_page_token_forms(server: FakeXAIServer, session: Any, mark: str) -> None:
    """The last page's token is null, empty or absent as batch_end_token says."""
    server.settings.batch_end_token = mark
    await call(session, server, "POST", "/batches", {"name": "x"})
    _, data, _ = await call(session, server, "GET", "/batches")
    expected = {"null": None, "empty": "", "absent": "missing"}[mark]
    assert data.get("pagination_token", "missing") == expected


# --- adding requests ------------------------------------------------------------------------------


async def test_add_requests_then_they_succeed(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """Added requests are pending at first, then succeed and are billed per image."""
    server.settings.batch_processing_seconds = 5
    batch_id = (await create(session, server, clock))["batch_id"]
    status, data = await add(session, server, batch_id, gen("a", n=2), gen("b"))
    assert (status, data) == (200, {})
    state = (await get_batch(session, server, batch_id))["state"]
    assert state == {
        "num_requests": 2,
        "num_pending": 2,
        "num_success": 0,
        "num_error": 0,
        "num_cancelled": 0,
    }
    assert server.ledger.images_billed == 0
    clock.advance(1000)
    state = (await get_batch(session, server, batch_id))["state"]
    assert (state["num_pending"], state["num_success"]) == (0, 2)
    ledger = server.ledger
    assert (ledger.batch_adds, ledger.batch_requests_added) == (1, 2)
    assert ledger.batch_request_adds == {"a": 1, "b": 1}
    assert (ledger.images_billed, ledger.batch_images_billed) == (3, 3)
    assert ledger.cost_in_usd_ticks == 3 * 200_000_000
    assert ledger.billed_prompts["a red fox"] == 3


async def test_results_carry_the_image_answer(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A result holds response.image_generation with data, usage and a keyless image URL."""
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a"))
    status, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    assert status == 200
    (result,) = data["results"]
    assert result["batch_request_id"] == "a"
    body = result["batch_result"]["response"]["image_generation"]
    assert body["usage"] == {"cost_in_usd_ticks": 200_000_000}
    url = body["data"][0]["url"]
    assert url.startswith(server.origin + "/imgen/")
    async with session.get(url) as response:
        assert response.status == 200
        assert (await response.read()).startswith(b"\x89PNG")
    assert server.ledger.images_downloaded == 1
    assert server.ledger.downloads_with_auth == 0
    assert server.ledger.images_delivered == 1


async def test_edit_results_use_the_configured_key(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """Edits come back under image_generation by default, or image_edit when set."""
    batch_id = (await create(session, server, clock))["batch_id"]
    edit = {"prompt": "add a hat", "image": {"url": "https://e.test/a.png", "type": "image_url"}}
    await add(
        session,
        server,
        batch_id,
        {"batch_request_id": "e", "batch_request": {"image_edit": edit}},
    )
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    assert list(data["results"][0]["batch_result"]["response"]) == ["image_generation"]
    assert server.ledger.cost_in_usd_ticks == 220_000_000
    server.settings.batch_edit_result_key = "image_edit"
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    assert list(data["results"][0]["batch_result"]["response"]) == ["image_edit"]


async def test_b64_json_is_honoured_unless_switched_off(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """response_format b64_json gives inline images; batch_b64=False gives URLs instead."""
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a", response_format="b64_json"))
    await get_batch(session, server, batch_id)  # settings apply when a request finishes
    server.settings.batch_b64 = False
    await add(session, server, batch_id, gen("b", response_format="b64_json"))
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    images = {
        r["batch_request_id"]: r["batch_result"]["response"]["image_generation"]["data"][0]
        for r in data["results"]
    }
    assert images["a"]["b64_json"]
    assert images["a"]["url"] is None
    assert images["b"]["url"]
    assert images["b"]["b64_json"] is None


async def test_duplicate_request_id_is_refused(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """An id already in the batch (or twice in one call) refuses the whole call, and is counted."""
    batch_id = (await create(session, server, clock))["batch_id"]
    assert (await add(session, server, batch_id, gen("a")))[0] == 200
    status, data = await add(session, server, batch_id, gen("b"), gen("a"))
    assert status == 400
    assert "'a'" in data["error"]
    status, _ = await add(session, server, batch_id, gen("c"), gen("c"))
    assert status == 400
    assert (await get_batch(session, server, batch_id))["state"]["num_requests"] == 1
    assert server.ledger.batch_request_adds == {"a": 2, "b": 1, "c": 2}
    assert server.ledger.batch_adds == 1


async def test_request_without_an_id_gets_a_uuid(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A request without batch_request_id is given a UUID."""
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen(None))
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/requests")
    assert re.fullmatch(UUID, data["batch_request_metadata"][0]["batch_request_id"])


@pytest.mark.parametrize(
    "item",
    [
        pytest.param("x", id="not-object"),
        pytest.param({"batch_request_id": "a"}, id="no-batch-request"),
        pytest.param({"batch_request": {"chat_get_completion": {}}}, id="chat-kind"),
        pytest.param({"batch_request": {"image_generation": {"n": 1}}}, id="no-prompt"),
        pytest.param(gen("a", size="1024x1024"), id="unknown-field"),
        pytest.param({"batch_request_id": 5, "batch_request": {}}, id="id-not-string"),
    ],
)
async def test_malformed_add_gets_400(
    server: FakeXAIServer, session: Any, clock: FakeClock, item: Any
) -> None:
    """A malformed item or a body that does not deserialize refuses the whole call."""
    batch_id = (await create(session, server, clock))["batch_id"]
    status, _ = await add(session, server, batch_id, gen("ok"), item)
    assert status == 400
    assert (await get_batch(session, server, batch_id))["state"]["num_requests"] == 0


async def test_empty_add_gets_400(server: FakeXAIServer, session: Any, clock: FakeClock) -> None:
    """An add call with no requests is refused."""
    batch_id = (await create(session, server, clock))["batch_id"]
    status, _, _ = await call(
        session, server, "POST", f"/batches/{batch_id}/requests", {"batch_requests": []}
    )
    assert status == 400


async def test_unsupported_model_is_refused(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A request for a model not enabled for batch gets 400 'not supported for batch processing'."""
    server.settings.batch_unsupported_models = ("grok-old",)
    batch_id = (await create(session, server, clock))["batch_id"]
    status, data = await add(session, server, batch_id, gen("a", model="grok-old"))
    assert status == 400
    assert "not supported for batch processing" in data["error"]


async def test_adds_over_the_rolling_limit_get_429(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """Past batch_add_limit calls in the window, an add gets 429 and adds nothing."""
    server.settings.batch_add_limit = 2
    batch_id = (await create(session, server, clock))["batch_id"]
    assert (await add(session, server, batch_id, gen("a")))[0] == 200
    clock.advance(10)
    assert (await add(session, server, batch_id, gen("b")))[0] == 200
    status, _, response = await call(
        session, server, "POST", f"/batches/{batch_id}/requests", {"batch_requests": [gen("c")]}
    )
    assert status == 429
    assert response.headers["Retry-After"] == "20"
    assert "c" not in server.ledger.batch_request_adds
    clock.advance(20)
    assert (await add(session, server, batch_id, gen("c")))[0] == 200
    assert server.ledger.batch_adds == 3


async def test_add_over_the_size_limit_gets_413(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """An add call over batch_add_max_bytes gets 413 and adds nothing."""
    server.settings.batch_add_max_bytes = 1000
    batch_id = (await create(session, server, clock))["batch_id"]
    status, _ = await add(session, server, batch_id, gen("a", prompt="x" * 2000))
    assert status == 413
    assert (await get_batch(session, server, batch_id))["state"]["num_requests"] == 0


async def test_dropped_add_still_lands(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """enqueue_batch(Reply.drop(), route='add') adds the requests, then drops the answer."""
    batch_id = (await create(session, server, clock))["batch_id"]
    server.enqueue_batch(Reply.drop(), route="add")
    with pytest.raises(aiohttp.ClientError):
        await add(session, server, batch_id, gen("a"))
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/requests")
    assert [m["batch_request_id"] for m in data["batch_request_metadata"]] == ["a"]
    assert server.ledger.batch_adds == 1


async def test_scripted_error_runs_nothing(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A scripted error on create answers it without creating a batch."""
    server.enqueue_batch(Reply.error(503, retry_after=2), route="create")
    status, _, response = await call(session, server, "POST", "/batches", {"name": "x"})
    assert status == 503
    assert response.headers["Retry-After"] == "2"
    assert server.ledger.batches_created == 0
    with pytest.raises(ValueError, match="unknown route"):
        server.enqueue_batch(Reply.ok(), route="nope")


# --- metadata and results -------------------------------------------------------------------------


async def test_request_metadata_states(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """Request metadata moves from pending (no finish_time) to succeeded with a finish_time."""
    server.settings.batch_processing_seconds = 5
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a"))
    path = f"/batches/{batch_id}/requests"
    _, data, _ = await call(session, server, "GET", path)
    (meta,) = data["batch_request_metadata"]
    assert meta["state"] == "pending"
    assert meta["finish_time"] is None
    assert meta["endpoint"] == "xai_api.Image/GenerateImage"
    assert meta["model"] == "grok-imagine-image"
    clock.advance(1000)
    _, data, _ = await call(session, server, "GET", path)
    (meta,) = data["batch_request_metadata"]
    assert meta["state"] == "succeeded"
    assert re.fullmatch(RFC3339, meta["finish_time"])


@pytest.mark.parametrize("param", ["limit=0", "limit=1001", "limit=x", "pagination_token=bogus"])
async def test_bad_paging_gets_400(
    server: FakeXAIServer, session: Any, clock: FakeClock, param: str
) -> None:
    """limit outside 1-1000 or a token the list did not give out is refused with 400."""
    batch_id = (await create(session, server, clock))["batch_id"]
    for what in ("requests", "results"):
        status, _, _ = await call(session, server, "GET", f"/batches/{batch_id}/{what}?{param}")
        assert status == 400


async def test_requests_page_size_alias(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """The older page_size parameter works like limit."""
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a"), gen("b"))
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/requests?page_size=1")
    assert len(data["batch_request_metadata"]) == 1
    assert data["pagination_token"]


async def test_results_arrive_progressively_in_random_order(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """Results appear as requests finish, not in add order, and page with tokens."""
    server.settings.batch_processing_seconds = 10
    batch_id = (await create(session, server, clock))["batch_id"]
    ids = [f"r{i:02}" for i in range(40)]
    await add(session, server, batch_id, *(gen(i, prompt=i) for i in ids))
    path = f"/batches/{batch_id}/results"
    seen: list[int] = []
    for _ in range(4):
        clock.advance(4)
        results, _ = await all_pages(session, server, path, "results", 7)
        seen.append(len(results))
    clock.advance(10_000)
    results, pages = await all_pages(session, server, path, "results", 7)
    order = [r["batch_request_id"] for r in results]
    assert sorted(order) == ids
    assert order != ids
    assert seen == sorted(seen)
    assert 0 < seen[0] < 40
    assert pages == 6


async def test_a_result_page_token_survives_new_results(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A token read before more results finish still continues where it left off."""
    server.settings.batch_processing_seconds = 10
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, *(gen(f"r{i}") for i in range(20)))
    path = f"/batches/{batch_id}/results"
    clock.advance(10_000)
    _, first, _ = await call(session, server, "GET", path + "?limit=5")
    _, rest, _ = await call(
        session, server, "GET", path + f"?limit=1000&pagination_token={first['pagination_token']}"
    )
    ids = [r["batch_request_id"] for r in first["results"] + rest["results"]]
    assert sorted(ids) == sorted(f"r{i}" for i in range(20))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("string", {"batch_result": {"error": "n: must be between 1 and 10."}}),
        (
            "status",
            {"batch_result": {"error": {"code": 3, "message": "n: must be between 1 and 10."}}},
        ),
        (
            "vercel",
            {
                "batch_result": {"error": {"code": 3, "message": "n: must be between 1 and 10."}},
                "error_message": "n: must be between 1 and 10.",
            },
        ),
        (
            "top_level",
            {
                "error": {"message": "n: must be between 1 and 10."},
                "error_message": "n: must be between 1 and 10.",
            },
        ),
    ],
)
async def test_per_request_error_shapes(
    server: FakeXAIServer, session: Any, clock: FakeClock, shape: str, expected: dict[str, Any]
) -> None:
    """A bad value is accepted, then fails (not billed) in each documented error shape."""
    server.settings.batch_error_shape = shape
    batch_id = (await create(session, server, clock))["batch_id"]
    assert (await add(session, server, batch_id, gen("bad", n=20)))[0] == 200
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    assert data["results"] == [{"batch_request_id": "bad", **expected}]
    state = (await get_batch(session, server, batch_id))["state"]
    assert (state["num_error"], state["num_success"]) == (1, 0)
    assert server.ledger.images_billed == 0
    assert server.ledger.batch_requests_failed == 1


async def test_vercel_shape_marks_successes_with_code_0(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """In the vercel shape a success also carries error {code: 0, message: ''}."""
    server.settings.batch_error_shape = "vercel"
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a"))
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    assert data["results"][0]["batch_result"]["error"] == {"code": 0, "message": ""}


async def test_mixed_error_shapes(server: FakeXAIServer, session: Any, clock: FakeClock) -> None:
    """batch_error_shape='mixed' writes failures in several shapes within one batch."""
    server.settings.batch_error_shape = "mixed"
    server.settings.batch_failure_rate = 1.0
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, *(gen(f"r{i}") for i in range(40)))
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results?limit=1000")
    shapes = {
        "top" if "batch_result" not in r else type(r["batch_result"]["error"]).__name__
        for r in data["results"]
    }
    assert shapes == {"top", "str", "dict"}


async def test_failure_rate_fails_without_billing(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """With batch_failure_rate=1 every request fails with code 13 and nothing is billed."""
    server.settings.batch_failure_rate = 1.0
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a"), gen("b"))
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    assert {r["batch_result"]["error"]["code"] for r in data["results"]} == {13}
    assert server.ledger.images_billed == 0


async def test_moderated_results_are_billed(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A moderated request succeeds with an image without url or b64_json, and is billed."""
    server.settings.batch_moderation_rate = 1.0
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a"))
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    image = data["results"][0]["batch_result"]["response"]["image_generation"]["data"][0]
    assert image["url"] is None
    assert image["b64_json"] is None
    assert image["respect_moderation"] is False
    assert server.ledger.batch_images_billed == 1
    assert server.ledger.images_delivered == 0


async def test_result_urls_expire_an_hour_after_finishing(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A result's image URL works until batch_url_ttl after its request finished."""
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a"))
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    url = data["results"][0]["batch_result"]["response"]["image_generation"]["data"][0]["url"]
    clock.advance(3599)
    async with session.get(url) as response:
        assert response.status == 200
    clock.advance(1)
    async with session.get(url) as response:
        assert response.status == 404
    server.settings.expired_status = 403
    async with session.get(url) as response:
        assert response.status == 403


async def test_expired_batch_has_no_results(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """After expire_time, /results answers 404 while the batch object stays readable."""
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a"))
    clock.advance(86_400)
    status, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results")
    assert status == 404
    assert "expired" in data["error"]
    assert (await get_batch(session, server, batch_id))["state"]["num_success"] == 1
    assert (await add(session, server, batch_id, gen("b")))[0] == 400


async def test_real_clock_finishes_requests_without_polling(session: Any) -> None:
    """With the real clock, requests finish (and are billed) without anyone polling."""
    async with FakeXAIServer() as server:
        _, batch, _ = await call(session, server, "POST", "/batches", {"name": "x"})
        await add(session, server, batch["batch_id"], gen("a"), gen("b"))
        await server.wait_for(lambda ledger: ledger.batch_requests_succeeded == 2)
        assert server.ledger.batch_images_billed == 2


# --- cancel ---------------------------------------------------------------------------------------


async def test_cancel_keeps_finished_and_cancels_pending(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """Cancel turns pending requests into cancelled; finished results stay; adds are refused."""
    server.settings.batch_processing_seconds = 10
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, *(gen(f"r{i}") for i in range(30)))
    clock.advance(5)
    status, batch, _ = await call(session, server, "POST", f"/batches/{batch_id}:cancel", {})
    assert status == 200
    assert re.fullmatch(RFC3339, batch["cancel_time"])
    assert batch["cancel_by_xai_message"] is None
    state = batch["state"]
    assert state["num_pending"] == 0
    assert 0 < state["num_success"] < 30
    assert state["num_success"] + state["num_cancelled"] == 30
    clock.advance(10_000)
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results?limit=1000")
    assert len(data["results"]) == state["num_success"]
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/requests?limit=1000")
    states = [m["state"] for m in data["batch_request_metadata"]]
    assert states.count("cancelled") == state["num_cancelled"]
    assert server.ledger.batch_images_billed == state["num_success"]
    assert (await add(session, server, batch_id, gen("late")))[0] == 400
    server.settings.batch_cancelled_in_results = True
    _, data, _ = await call(session, server, "GET", f"/batches/{batch_id}/results?limit=1000")
    cancelled = [r for r in data["results"] if "error" in r["batch_result"]]
    assert len(cancelled) == state["num_cancelled"]


async def test_cancel_without_a_body(server: FakeXAIServer, session: Any, clock: FakeClock) -> None:
    """Cancel accepts no body at all, and a second cancel changes nothing."""
    batch_id = (await create(session, server, clock))["batch_id"]
    status, first, _ = await call(session, server, "POST", f"/batches/{batch_id}:cancel")
    clock.advance(5)
    _, second, _ = await call(session, server, "POST", f"/batches/{batch_id}:cancel")
    assert status == 200
    assert first["cancel_time"] == second["cancel_time"]


# --- files ----------------------------------------------------------------------------------------


async def test_upload_get_content_delete(server: FakeXAIServer, session: Any) -> None:
    """A file uploads with expires_after first, reads back, and is gone once deleted."""
    content = (line("a") + "\n").encode()
    status, data = await upload(session, server, content)
    assert status == 200
    assert re.fullmatch("file_" + UUID, data["id"])
    assert data["object"] == "file"
    assert data["bytes"] == len(content)
    assert data["filename"] == "jobs.jsonl"
    assert data["purpose"] == ""
    assert data["expires_at"] == data["created_at"] + 86400
    file_id = data["id"]
    status, again, _ = await call(session, server, "GET", f"/files/{file_id}")
    assert (status, again) == (200, data)
    async with session.get(
        f"{server.base_url}/files/{file_id}/content",
        headers={"Authorization": f"Bearer {server.api_key}"},
    ) as response:
        assert response.content_type == "application/octet-stream"
        assert await response.read() == content
    status, deleted, _ = await call(session, server, "DELETE", f"/files/{file_id}")
    assert (status, deleted) == (200, {"id": file_id, "deleted": True})
    for method, path in [("GET", ""), ("GET", "/content"), ("DELETE", "")]:
        status, _, _ = await call(session, server, method, f"/files/{file_id}{path}")
        assert status == 404
    assert server.ledger.files_uploaded == 1


async def test_upload_without_expiry(server: FakeXAIServer, session: Any) -> None:
    """Without expires_after the file has expires_at null."""
    status, data = await upload(session, server, b"x", expires_after=None)
    assert status == 200
    assert data["expires_at"] is None


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"expires_first": False}, id="expires-after-file"),
        pytest.param({"expires_after": "60"}, id="too-short"),
        pytest.param({"expires_after": "2592001"}, id="too-long"),
        pytest.param({"expires_after": "soon"}, id="not-a-number"),
        pytest.param({"with_file": False}, id="no-file"),
        pytest.param({"with_file": False, "expires_after": None}, id="purpose-only"),
    ],
)
async def test_bad_upload_gets_400(server: FakeXAIServer, session: Any, kwargs: Any) -> None:
    """expires_after after the file, out of range or not a number, or no file part: 400."""
    status, _ = await upload(session, server, b"x", **kwargs)
    assert status == 400
    assert server.ledger.files_uploaded == 0


async def test_upload_that_is_not_multipart_gets_400(server: FakeXAIServer, session: Any) -> None:
    """A JSON body to POST /v1/files is refused."""
    status, _, _ = await call(session, server, "POST", "/files", {"file": "x"})
    assert status == 400


async def test_upload_over_the_limit_gets_413(server: FakeXAIServer, session: Any) -> None:
    """A file over files_max_bytes gets 413."""
    server.settings.files_max_bytes = 100
    status, _ = await upload(session, server, b"x" * 101)
    assert status == 413
    status, _ = await upload(session, server, b"x" * 100)
    assert status == 200


async def test_files_expire_on_the_clock(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A file is 404 once expires_after seconds have passed."""
    _, data = await upload(session, server, b"x", expires_after="3600")
    clock.advance(3600)
    status, _, _ = await call(session, server, "GET", f"/files/{data['id']}")
    assert status == 404


async def test_list_files_always_gives_a_token(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """GET /v1/files pages newest first; every page has a token, the last one is short."""
    ids = []
    for _ in range(3):
        clock.advance(1)
        ids.append((await upload(session, server, b"x"))[1]["id"])
    _, first, _ = await call(session, server, "GET", "/files?limit=2")
    assert [f["id"] for f in first["data"]] == ids[::-1][:2]
    token = first["pagination_token"]
    _, second, _ = await call(session, server, "GET", f"/files?limit=2&pagination_token={token}")
    assert [f["id"] for f in second["data"]] == ids[:1]
    assert second["pagination_token"]
    _, asc, _ = await call(session, server, "GET", "/files?order=asc")
    assert [f["id"] for f in asc["data"]] == ids


# --- batches from files ---------------------------------------------------------------------------


async def test_file_batch_is_validated_then_runs_and_is_sealed(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A file batch shows 0 requests until validated, then N; results join on custom_id."""
    server.settings.batch_validation_seconds = 30
    lines = [line("a"), line("b", n=2), ""]
    edit = {"prompt": "hat", "image": {"url": "https://e.test/a.png", "type": "image_url"}}
    lines.append(
        json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/images/edits", "body": edit})
    )
    _, uploaded = await upload(session, server, "\n".join(lines).encode())
    batch = await create(session, server, clock, input_file_id=uploaded["id"])
    assert batch["input_file_id"] == uploaded["id"]
    assert batch["state"]["num_requests"] == 0
    batch_id = batch["batch_id"]
    assert (await get_batch(session, server, batch_id))["state"]["num_requests"] == 0
    status, data = await add(session, server, batch_id, gen("more"))
    assert status == 400
    assert "sealed" in data["error"]
    clock.advance(30)
    state = (await get_batch(session, server, batch_id))["state"]
    assert (state["num_requests"], state["num_success"]) == (3, 3)
    results, _ = await all_pages(session, server, f"/batches/{batch_id}/results", "results", 10)
    assert sorted(r["batch_request_id"] for r in results) == ["a", "b", "e"]
    assert server.ledger.batch_images_billed == 4
    assert server.ledger.batch_adds == 0
    assert server.ledger.batch_requests_added == 3


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not json", "line 2: not valid JSON."),
        (line("a"), "line 2: custom_id 'a' is not unique in the file."),
        (
            line("c", size="big"),
            "line 2: Failed to deserialize the JSON body: unknown field `size`.",
        ),
        (
            json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/nope", "body": {}}),
            "line 2: url: '/v1/nope' is not a batch endpoint.",
        ),
        (line("c", model="grok-old"), "Model grok-old is not supported for batch processing."),
    ],
)
async def test_bad_line_gets_the_batch_cancelled_by_xai(
    server: FakeXAIServer, session: Any, clock: FakeClock, bad: str, message: str
) -> None:
    """One bad line (or an unsupported model) cancels the whole batch with xAI's message."""
    server.settings.batch_unsupported_models = ("grok-old",)
    _, uploaded = await upload(session, server, f"{line('a')}\n{bad}\n".encode())
    batch_id = (await create(session, server, clock, input_file_id=uploaded["id"]))["batch_id"]
    batch = await get_batch(session, server, batch_id)
    assert batch["cancel_by_xai_message"] == f"JSONL file validation failed: {message}"
    assert batch["cancel_time"] is not None
    assert set(batch["state"].values()) == {0}
    assert server.ledger.images_billed == 0


async def test_file_batch_over_the_line_limit_is_cancelled(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A file with more lines than batch_file_max_requests is cancelled by xAI."""
    server.settings.batch_file_max_requests = 2
    _, uploaded = await upload(session, server, "\n".join(line(f"r{i}") for i in range(3)).encode())
    batch_id = (await create(session, server, clock, input_file_id=uploaded["id"]))["batch_id"]
    message = (await get_batch(session, server, batch_id))["cancel_by_xai_message"]
    assert "at most 2 requests" in message


async def test_empty_file_batch_is_cancelled(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """A file without a single request is cancelled by xAI rather than left validating."""
    _, uploaded = await upload(session, server, b"\n")
    batch_id = (await create(session, server, clock, input_file_id=uploaded["id"]))["batch_id"]
    message = (await get_batch(session, server, batch_id))["cancel_by_xai_message"]
    assert message == "JSONL file validation failed: the file has no requests."


async def test_batch_from_unknown_file_gets_404(server: FakeXAIServer, session: Any) -> None:
    """Creating a batch from a file id that does not exist answers 404."""
    status, _, _ = await call(
        session, server, "POST", "/batches", {"name": "x", "input_file_id": "file_nope"}
    )
    assert status == 404
    assert server.ledger.batches_created == 0


# --- the packaged entry points --------------------------------------------------------------------


async def test_pytest_fixture_serves_the_batch_api(
    fake_xai_server: FakeXAIServer, session: Any
) -> None:
    """The plugin's fake_xai_server fixture answers the Batch API."""
    status, batch, _ = await call(session, fake_xai_server, "POST", "/batches", {"name": "x"})
    assert status == 200
    assert batch["batch_id"].startswith("batch_")


async def test_reset_keeps_batches_and_clears_the_ledger(
    server: FakeXAIServer, session: Any, clock: FakeClock
) -> None:
    """reset() empties the counters, queues and limits; batches already created stay."""
    batch_id = (await create(session, server, clock))["batch_id"]
    await add(session, server, batch_id, gen("a"))
    server.enqueue_batch(Reply.error(500))
    server.reset()
    assert server.ledger.batch_adds == 0
    assert not server.ledger.batch_request_adds
    assert (await get_batch(session, server, batch_id))["batch_id"] == batch_id
    status, _, _ = await call(session, server, "POST", "/batches", {"name": "again"})
    assert status == 200  # the creation limit's window was emptied too


def test_fake_clock_moves_only_forward() -> None:
    """A FakeClock advances by hand and refuses to go back."""
    clock = FakeClock(100)
    clock.advance(2.5)
    assert clock() == 102.5
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
