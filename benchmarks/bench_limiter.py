"""The adaptive rate limiter under scattered 429s: before and after its redesign.

The job: 200 prompts through the bulk engine (concurrency 16, ``max_retries=8``) against the fake
server, which may enforce a limit in any sliding second (no burst, 429 with ``Retry-After``
beyond it), with ``generation_fault_rate=0.2``: a fifth of the generations answer 429 (without
``Retry-After``) or 500, half each, at random. Each scenario runs three ways:

- ``none``: no client limiter (``rate_limit=None``);
- ``before``: the limiter as it was before the redesign (halve on a 429 at most once a second,
  recover by 5 % of the rate per second), loaded from git (``--before-rev``);
- ``after``: the current limiter (decrease to the accepted rate, by at most half, at most once a
  window; recover by 25 % of the rate per second).

Scenarios: ``unlimited server`` (client limit 50/s, the fake enforcing none: the case of the
report, where only the random faults answer 429), ``matched`` (client limit 50/s = the server's)
and ``over`` (client limit 100/s, twice the server's: the limiter must back off). Reported: wall
time, items per second, items ok, attempts sent, and the 429s answered by the server's real limit
and by the random faults.

Run: ``.venv/bin/python benchmarks/bench_limiter.py [--repeat N] [--before-rev REV]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from xai_images import AsyncClient, GenerateRequest
from xai_images.testing import FakeXAIServer

ROOT = Path(__file__).resolve().parent.parent
# The last commit with the limiter that halved on every second's first 429.
BEFORE_REV = "d70d2fd"


def load_before(rev: str) -> ModuleType:
    """The limiter module as it was at ``rev``, imported under a private name."""
    source = subprocess.run(
        ["git", "show", f"{rev}:xai_images/_ratelimit.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    tmp = Path(tempfile.mkdtemp()) / "ratelimit_before.py"
    tmp.write_text(source)
    spec = importlib.util.spec_from_file_location("ratelimit_before", tmp)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def one_run(
    variant: str,
    client_rate: float,
    server_rate: float | None,
    before: ModuleType,
    seed: int,
    count: int,
) -> dict[str, Any]:
    async with FakeXAIServer(
        image_bytes=1024, rps_limit=server_rate, generation_fault_rate=0.2, fault_seed=seed
    ) as server:
        # The ledger counts 429s of both kinds; count the real limit's own refusals apart.
        limit_429 = 0
        check_rate = server.check_rate

        def counting_check_rate() -> Any:
            nonlocal limit_429
            refused = check_rate()
            limit_429 += refused is not None
            return refused

        server.check_rate = counting_check_rate  # type: ignore[method-assign]
        rate_limit = None if variant == "none" else client_rate
        async with AsyncClient(
            api_key=server.api_key, base_url=server.base_url, rate_limit=rate_limit, max_retries=8
        ) as client:
            if variant == "before":
                client._limiter = before.RateLimiter(client_rate)
            with tempfile.TemporaryDirectory() as out:
                started = time.perf_counter()
                outcomes = await client.bulk(
                    [GenerateRequest(f"limiter {i}") for i in range(count)], output_dir=out
                ).collect()
                elapsed = time.perf_counter() - started
        requests = server.ledger.api_requests()
        return {
            "seconds": elapsed,
            "ok": sum(o.ok for o in outcomes),
            "attempts": len(requests),
            "http_429": server.ledger.rate_limited,
            "random_429": server.ledger.rate_limited - limit_429,
            "limit_429": limit_429,
            "items_per_s": count / elapsed,
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--before-rev", default=BEFORE_REV)
    args = parser.parse_args()
    before = load_before(args.before_rev)
    # name: (client limit, server limit)
    scenarios: dict[str, tuple[float, float | None]] = {
        "unlimited server": (50.0, None),
        "matched": (50.0, 50.0),
        "over": (100.0, 50.0),
    }
    print(
        f"{args.count} prompts, 20 % random 429/500, concurrency 16, max_retries 8, "
        f"median of {args.repeat} (fault seeds 0..{args.repeat - 1})"
    )
    header = (
        "| scenario (client / server limit) | limiter | seconds | items/s | vs none | ok "
        "| attempts | 429 (limit) | 429 (random) |"
    )
    print(header)
    print("| --- | --- | --: | --: | --: | --: | --: | --: | --: |")
    for name, (client_rate, server_rate) in scenarios.items():
        name = f"{name} ({client_rate:g} / {server_rate or 'none'})"
        baseline: float | None = None
        for variant in ("none", "before", "after"):
            runs = [
                await one_run(variant, client_rate, server_rate, before, seed, args.count)
                for seed in range(args.repeat)
            ]

            def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            seconds = med("seconds")
            if baseline is None:
                baseline = seconds
            print(
                f"| {name} | {variant} | {seconds:.2f} "
                f"| {med('items_per_s'):.1f} | {seconds / baseline:.2f}x | {med('ok'):.0f} "
                f"| {med('attempts'):.0f} | {med('limit_429'):.0f} | {med('random_429'):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
