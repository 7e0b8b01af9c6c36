"""``python -m xai_images.testing``: run the fake xAI image API for benchmarks and demos.

It serves the same ``FakeXAIServer`` as the pytest fixtures: the real-time image endpoints, the
Batch and Files APIs (on the real clock) and the image host.

Prints one line with the base URL, serves until Ctrl-C (SIGINT) or SIGTERM, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

import attrs

from .._config import FAKE_SERVER_PORT
from ._imagegen import FORMATS
from ._server import FakeXAIServer
from ._settings import FakeSettings, check_loopback

_SETTINGS = frozenset(field.name for field in attrs.fields(FakeSettings))

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xai_images.testing",
        description="Run a local fake of the xAI image API (loopback only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument(
        "--port", type=int, default=FAKE_SERVER_PORT, help="TCP port (0: any free port)"
    )
    parser.add_argument(
        "--api-key", default=None, help="require this key (default: any non-empty token)"
    )
    parser.add_argument("--image-bytes", type=int, default=4096, help="size of served images")
    parser.add_argument(
        "--format", dest="image_format", choices=FORMATS, default="png", help="image format"
    )
    parser.add_argument("--generation-latency", type=float, default=0.0, metavar="S")
    parser.add_argument("--download-latency", type=float, default=0.0, metavar="S")
    parser.add_argument("--rps-limit", type=float, default=None, metavar="R")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="probability of a random fault on each generation and each download",
    )
    parser.add_argument(
        "--seed",
        dest="fault_seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the random faults",
    )
    parser.add_argument(
        "--batch-processing-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="mean processing time of one Batch API request",
    )
    parser.add_argument(
        "--batch-failure-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="probability that a Batch API request fails",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    server = FakeXAIServer(
        args.api_key,
        host=args.host,
        port=args.port,
        generation_fault_rate=args.fault_rate,
        download_fault_rate=args.fault_rate,
        # Options whose destination is named like a FakeSettings field go to it as they are.
        **{name: value for name, value in vars(args).items() if name in _SETTINGS},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        key = "any non-empty token" if args.api_key is None else "as given by --api-key"
        print(f"xai-images fake server on {server.base_url} (key: {key})", flush=True)
        await stop.wait()
        ledger = server.ledger
        totals = {
            "images_billed": ledger.images_billed,
            "images_delivered": ledger.images_delivered,
            "images_downloaded": ledger.images_downloaded,
            "images_uploaded": ledger.images_uploaded,
        }
        print(f"ledger: {json.dumps(totals)}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until SIGINT/SIGTERM, and return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        check_loopback(args.host)
    except ValueError as exc:
        parser.error(str(exc))  # exits with status 2
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - a signal before the handlers were installed
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
