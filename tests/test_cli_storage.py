"""The command line with object-store targets: ``-o s3://...`` and ``--upload-urls``."""

from __future__ import annotations

import asyncio

import pytest
from conftest import S3_SECRET_KEY

from xai_images._results._objstore import store_output
from xai_images._ui._cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from xai_images.testing import FakeXAIServer

pytest.importorskip("obstore")


async def cli(*argv: str) -> int:
    # main() runs its own event loop; a worker thread keeps the fake server's loop serving.
    return await asyncio.to_thread(main, list(argv))


async def test_generate_into_a_bucket_prints_locations(
    env: FakeXAIServer, s3_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`generate -o s3://...` downloads and stores each image; prints object URLs."""
    assert await cli("generate", "a kite", "-n", "2", "-o", f"{s3_target}/cli") == EXIT_OK
    locations = capsys.readouterr().out.split()
    assert len(locations) == 2
    assert all(loc.startswith(f"{s3_target}/cli/") for loc in locations)
    output = store_output(f"{s3_target}/cli")
    for loc in locations:
        assert await output.head(loc.rsplit("/", 1)[1]) is not None


async def test_upload_urls_let_the_api_store_the_images(
    env: FakeXAIServer, s3_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--upload-urls`: the fake PUTs into the bucket; nothing is downloaded, no URL printed."""
    code = await cli(
        "generate", "a kite", "-n", "2", "-o", s3_target, "--upload-urls", "--upload-expires", "60"
    )
    assert code == EXIT_OK
    captured = capsys.readouterr()
    assert len(captured.out.split()) == 2
    assert "X-Amz" not in captured.out + captured.err
    assert env.ledger.images_uploaded == 2
    assert env.ledger.images_downloaded == 0


async def test_failed_uploads_exit_failed_with_a_typed_message(
    env: FakeXAIServer, s3_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed PUT by the API is reported per image (billed, not stored); exit 1."""
    env.settings.upload_fail_rate = 1.0
    assert await cli("generate", "a kite", "-o", s3_target, "--upload-urls") == EXIT_FAILED
    err = capsys.readouterr().err
    assert "billed but not stored" in err
    assert "X-Amz" not in err


async def test_store_problems_stop_before_anything_is_billed(
    env: FakeXAIServer, s3_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing bucket, or --upload-urls without a store, is a usage error; nothing billed."""
    assert await cli("generate", "a kite", "-o", f"{s3_target}-missing") == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{s3_target}-missing" in err
    assert S3_SECRET_KEY not in err
    assert await cli("generate", "a kite", "-o", ".", "--upload-urls") == EXIT_USAGE
    assert "--upload-urls needs an object-store" in capsys.readouterr().err
    assert env.ledger.images_billed == 0
