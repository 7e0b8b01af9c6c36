"""Signed uploads by xAI (``output.upload_urls``): the fake PUTs into moto's S3 server."""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import S3_SECRET_KEY, open_multipart_uploads

import xai_images
from xai_images import GenerateRequest
from xai_images._results._objstore import store_output
from xai_images.testing import FakeXAIServer

obstore = pytest.importorskip("obstore")


def _sent_urls(server: FakeXAIServer) -> list[str]:
    posts = [r for r in server.ledger.requests if r.method == "POST"]
    urls: list[str] = posts[-1].body["output"]["upload_urls"]
    return urls


async def test_realtime_images_land_in_the_bucket_without_passing_through_the_client(
    client: xai_images.AsyncClient, server: FakeXAIServer, s3_target: str, moto_endpoint: str
) -> None:
    """Each image is PUT by the API to its signed URL; the client downloads nothing and
    records key, size and etag, never a URL."""
    request = GenerateRequest("a lighthouse", n=2, id="light")
    result = await client.images.send_to_store(request, f"{s3_target}/run")
    assert [i.key for i in result.stored] == ["light-0.jpg", "light-1.jpg"]
    assert [i.size for i in result.stored] == [server.settings.image_bytes] * 2
    assert all(i.etag for i in result.stored)
    assert result.stored[0].location == f"{s3_target}/run/light-0.jpg"
    assert server.ledger.images_downloaded == 0
    assert server.ledger.images_uploaded == 2
    assert server.ledger.images_billed == 2
    got = await obstore.get_async(store_output(f"{s3_target}/run").store, "light-0.jpg")
    assert got.attributes["Content-Type"] == "image/png"  # the image's mime_type, as PUT
    urls = _sent_urls(server)
    assert len(urls) == 2
    assert urlsplit(urls[0]).path.endswith("/run/light-0.jpg")
    assert parse_qs(urlsplit(urls[0]).query)["X-Amz-Expires"] == ["900"]  # 15 min default
    for text in (repr(result), str(result.images)):
        assert "X-Amz-Signature" not in text
        assert S3_SECRET_KEY not in text
    assert open_multipart_uploads(moto_endpoint, s3_target.removeprefix("s3://")) == []


async def test_deferred_request_uploads_too(
    client: xai_images.AsyncClient, server: FakeXAIServer, s3_target: str
) -> None:
    """A deferred request with signed URLs: signed for longer, stored once it is done."""
    result = await client.images.send_to_store(
        GenerateRequest("a harbour"), s3_target, deferred=True, wait_timeout=30
    )
    assert len(result.stored) == 1
    assert server.ledger.images_uploaded == 1
    assert parse_qs(urlsplit(_sent_urls(server)[0]).query)["X-Amz-Expires"] == ["7200"]


async def test_a_failed_upload_is_a_typed_outcome_billed_not_stored(
    client: xai_images.AsyncClient, server: FakeXAIServer, s3_target: str
) -> None:
    """A per-image storage_error becomes UploadFailedError on that image; never dropped."""
    server.settings.upload_fail_rate = 1.0
    result = await client.images.send_to_store(
        GenerateRequest("a storm", n=2), s3_target, expires_in=datetime.timedelta(minutes=3)
    )
    assert server.ledger.images_billed == 2
    assert result.stored == ()
    assert len(result.failed) == 2
    error = result.failed[0].error
    assert isinstance(error, xai_images.UploadFailedError)
    assert error.key == result.failed[0].key
    assert "billed but not stored" in str(error)
    assert "X-Amz" not in str(error)
    with pytest.raises(xai_images.UploadFailedError):
        result.raise_for_failures()


async def test_a_taken_key_is_refused_before_anything_is_billed(
    client: xai_images.AsyncClient, server: FakeXAIServer, s3_target: str
) -> None:
    """Signed uploads never overwrite: a taken key stops the request before it is sent."""
    await client.images.send_to_store(GenerateRequest("one", id="same"), s3_target)
    with pytest.raises(xai_images.FileCollisionError, match=r"same-0\.jpg already exists"):
        await client.images.send_to_store(GenerateRequest("two", id="same"), s3_target)
    assert server.ledger.images_billed == 1


async def test_unsignable_targets_are_refused_before_anything_is_billed(
    client: xai_images.AsyncClient, server: FakeXAIServer
) -> None:
    """A store that cannot sign (memory) and b64_json are refused before any request."""
    with pytest.raises(xai_images.StoreUnavailableError, match="cannot sign uploads"):
        await client.images.send_to_store(GenerateRequest("x"), "memory://signed-test")
    with pytest.raises(xai_images.ValidationError, match="response_format"):
        await client.images.send_to_store(
            GenerateRequest("x", response_format="b64_json"), "memory://signed-test"
        )
    assert server.ledger.images_billed == 0


def test_upload_url_count_errors_never_show_the_urls() -> None:
    """A wrong number of upload URLs is refused without putting a URL in the message."""
    secret = "https://bucket.example/k?X-Amz-Signature=deadbeef"
    request = GenerateRequest("x", n=2, extra_body={"output": {"upload_urls": [secret]}})
    with pytest.raises(xai_images.ValidationError, match="exactly n") as info:
        request.to_body()
    assert "deadbeef" not in str(info.value)


async def test_batch_api_requests_upload_to_their_signed_urls(
    client: xai_images.AsyncClient, server: FakeXAIServer, s3_target: str
) -> None:
    """The fake's Batch API PUTs each finished request's images to its upload URLs before its
    results list them; the answer read back confirms each object by key."""
    from xai_images._api._uploads import collect_uploads, plan_uploads

    request = GenerateRequest("a batch of boats", n=2, id="boats")
    plan = await plan_uploads(s3_target, request, name=None, expires_in=86400, deferred=True)
    signed = GenerateRequest(
        "a batch of boats", n=2, id="boats", extra_body={"output": {"upload_urls": list(plan.urls)}}
    )
    batch = await client.batches.create("uploads")
    await client.batches.add(batch.batch_id, [signed])
    page = await client.batches.results(batch.batch_id)
    assert [r.batch_request_id for r in page.results] == ["boats"]
    response = page.results[0].response
    assert response is not None
    assert server.ledger.images_uploaded == 2
    result = await collect_uploads(plan, response)
    assert [i.key for i in result.stored] == ["boats-0.jpg", "boats-1.jpg"]
    assert parse_qs(urlsplit(plan.urls[0]).query)["X-Amz-Expires"] == ["86400"]
    assert "X-Amz" not in repr(plan)


async def test_signed_urls_never_reach_logs_or_event_hooks(
    server: FakeXAIServer, s3_target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With DEBUG logging and every event hook on, no signed URL or secret key is emitted."""
    import logging

    events: list[object] = []
    caplog.set_level(logging.DEBUG)
    async with xai_images.AsyncClient(
        api_key=server.api_key, base_url=server.base_url, event_hooks=[events.append]
    ) as client:
        result = await client.images.send_to_store(GenerateRequest("quiet", n=2), s3_target)
    assert len(result.stored) == 2
    emitted = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(map(repr, events))
    emitted += "\n".join(repr(getattr(e, "origin", None)) for e in events)
    assert events
    assert "X-Amz-Signature" not in emitted
    assert "X-Amz-Credential" not in emitted
    assert S3_SECRET_KEY not in emitted


def test_manifest_records_never_hold_signed_urls() -> None:
    """A request carrying output.upload_urls is recorded (and its id derived) without them."""
    from xai_images._api._requests import derive_id

    one = GenerateRequest(
        "x", n=2, output={"upload_urls": ["https://h/a?sig=1", "https://h/b?sig=1"]}
    )
    two = GenerateRequest(
        "x", n=2, output={"upload_urls": ["https://h/a?sig=2", "https://h/b?sig=2"]}
    )
    assert "sig=" not in str(one.to_json())
    assert one.to_json()["output"] == {"upload_urls": "<2 signed URLs>"}
    assert derive_id(one) == derive_id(two)
    assert one.to_body()["output"]["upload_urls"][0] == "https://h/a?sig=1"  # still sent
