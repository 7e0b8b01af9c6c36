"""Bulk-job benchmarks against the fake server (no network, no key).

Scenarios (``--scenario``, default all):

- ``rate``: 200 prompts, fake enforcing 5 requests/s in any sliding second (no burst), client
  limiter at 5/s: count 429s and the wall time (target: zero 429s, at most 42 s).
- ``faults``: 200 prompts, 20 % of generations fail (429/500) and 10 % of downloads fail
  (500/truncated): every item must end ok, billed images must equal delivered (and saved)
  images, and no partial files may remain.
- ``memory``: 10,000 small images with the fake in a separate process; resident memory is
  sampled every 1,000 items to show that it stays flat.
- ``resume``: 500 prompts, stopped halfway (what the CLI's first Ctrl-C does), then run again
  with the same manifest: the ledger must show every prompt billed exactly once.
- ``hostile``: 200 prompts, 20 % of generations fail (429/500), 10 % of downloads fail
  (500/truncated) and 5 % more are truncated, 20 % of answers are lost after billing: billed
  images must equal delivered + unknown, with no partial files.
- ``interrupt``: 200 prompts behind a 10/s limiter, 8 at once, 0.2 s per generation; the run
  task is cancelled (a second Ctrl-C) while items wait for the limiter and others are in
  flight, then resumed without ``resend_unknown``: every prompt billed at most once, every
  prompt not recorded ``unknown`` delivered.
- ``answers``: a gzip bomb (1 GiB decompressed) and a 200 MB JSON answer (with a
  Content-Length, and chunked) against the default 128 MiB answer cap, each in a fresh
  process: the typed error and the peak memory.

Run: ``.venv/bin/python benchmarks/bench_batch.py [--scenario NAME]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xai_images import AsyncClient, GenerateRequest
from xai_images._bulk._manifest import load_manifest
from xai_images._bulk._source_realtime import run_batch
from xai_images.testing import FakeXAIServer


def _rss_kib() -> tuple[int, int]:
    """(current, peak) resident set size of this process in KiB (Linux)."""
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def _partials(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".part")]


async def scenario_rate(count: int = 200) -> dict[str, Any]:
    async with FakeXAIServer(image_bytes=2048, rps_limit=5) as server:
        async with AsyncClient(
            api_key=server.api_key, base_url=server.base_url, rate_limit=5
        ) as client:
            with tempfile.TemporaryDirectory() as out:
                started = time.perf_counter()
                outcomes = await run_batch(
                    client, [GenerateRequest(f"rate {i}") for i in range(count)], output_dir=out
                ).collect()
                elapsed = time.perf_counter() - started
        return {
            "items": count,
            "ok": sum(o.ok for o in outcomes),
            "http_429": server.ledger.rate_limited,
            "seconds": round(elapsed, 2),
            "achieved_rps": round(count / elapsed, 3),
            "share_of_limit": f"{count / elapsed / 5:.1%}",
        }


async def scenario_faults(count: int = 200) -> dict[str, Any]:
    async with FakeXAIServer(
        image_bytes=16 * 1024,
        generation_fault_rate=0.2,
        download_fault_rate=0.1,
        fault_seed=7,
    ) as server:
        async with AsyncClient(
            api_key=server.api_key, base_url=server.base_url, max_retries=8
        ) as client:
            with tempfile.TemporaryDirectory() as out:
                started = time.perf_counter()
                outcomes = await run_batch(
                    client,
                    [GenerateRequest(f"fault {i}") for i in range(count)],
                    output_dir=out,
                ).collect()
                elapsed = time.perf_counter() - started
                saved = sum(len(o.files) for o in outcomes if o.ok)
                partial = _partials(Path(out))
        ledger = server.ledger
        return {
            "items": count,
            "ok": sum(o.ok for o in outcomes),
            "images_billed": ledger.images_billed,
            "images_delivered": ledger.images_delivered,
            "images_saved": saved,
            "generation_faults_seen": sum(
                1 for r in ledger.api_requests() if r.status in (429, 500)
            ),
            "partial_files": len(partial),
            "seconds": round(elapsed, 2),
        }


async def scenario_memory(count: int = 10_000) -> dict[str, Any]:
    # The fake runs in its own process so that its ledger does not count in our memory.
    proc = subprocess.Popen(  # noqa: ASYNC220  (setup, before anything is measured)
        [sys.executable, "-m", "xai_images.testing", "--port", "0", "--image-bytes", "1024"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://\S+/v1)", line)
        if not match:
            raise RuntimeError(f"fake server did not start: {line!r}")
        base_url = match.group(1)
        samples: list[tuple[int, int]] = []
        async with AsyncClient(api_key="bench", base_url=base_url) as client:
            with tempfile.TemporaryDirectory() as out:
                started = time.perf_counter()
                done = 0
                ok = 0
                run = run_batch(
                    client,
                    (GenerateRequest(f"mem {i}") for i in range(count)),
                    output_dir=out,
                    concurrency=32,
                )
                async with run:
                    async for outcome in run:
                        done += 1
                        ok += outcome.ok
                        if done % 1000 == 0:
                            samples.append((done, _rss_kib()[0]))
                elapsed = time.perf_counter() - started
        _, peak = _rss_kib()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "items": count,
        "ok": ok,
        "seconds": round(elapsed, 1),
        "items_per_s": round(count / elapsed, 1),
        "rss_mib_every_1000": [round(kib / 1024, 1) for _, kib in samples],
        "peak_rss_mib": round(peak / 1024, 1),
    }


async def scenario_resume(count: int = 500) -> dict[str, Any]:
    async with FakeXAIServer(image_bytes=1024, generation_latency=0.02) as server:
        async with AsyncClient(api_key=server.api_key, base_url=server.base_url) as client:
            with tempfile.TemporaryDirectory() as out:
                requests = [GenerateRequest(f"resume {i}") for i in range(count)]
                first = run_batch(client, requests, output_dir=out)
                finished_first = 0
                async with first:
                    async for _ in first:
                        finished_first += 1
                        if finished_first == count // 2:
                            first.stop()
                recorded_after_stop = len(load_manifest(Path(out) / "manifest.jsonl"))
                second = await run_batch(client, requests, output_dir=out).collect()
                partial = _partials(Path(out))
        billed = server.ledger.billed_prompts
        return {
            "items": count,
            "finished_before_stop": finished_first,
            "recorded_after_stop": recorded_after_stop,
            "skipped_on_resume": sum(o.skipped for o in second),
            "run_on_resume": sum(not o.skipped for o in second),
            "ok_after_resume": sum(o.ok for o in second),
            "prompts_billed": len(billed),
            "prompts_billed_more_than_once": sum(1 for v in billed.values() if v > 1),
            "partial_files": len(partial),
        }


async def scenario_hostile(count: int = 200) -> dict[str, Any]:
    async with FakeXAIServer(
        image_bytes=16 * 1024,
        generation_fault_rate=0.2,
        download_fault_rate=0.1,
        download_truncate_rate=0.05,
        drop_after_billing_rate=0.2,
        fault_seed=11,
    ) as server:
        async with AsyncClient(
            api_key=server.api_key, base_url=server.base_url, max_retries=8
        ) as client:
            with tempfile.TemporaryDirectory() as out:
                outcomes = await run_batch(
                    client, [GenerateRequest(f"hostile {i}") for i in range(count)], output_dir=out
                ).collect()
                partial = _partials(Path(out))
                saved = sum(len(o.files) for o in outcomes if o.ok)
        ledger = server.ledger
        unknown = sum(o.status == "unknown" for o in outcomes)
        return {
            "items": count,
            "ok": sum(o.ok for o in outcomes),
            "failed": sum(o.status == "failed" for o in outcomes),
            "unknown": unknown,
            "images_billed": ledger.images_billed,
            "images_delivered": ledger.images_delivered,
            "images_saved": saved,
            "billed_eq_delivered_plus_unknown": ledger.images_billed
            == ledger.images_delivered + unknown,
            "prompts_billed_more_than_once": sum(
                1 for v in ledger.billed_prompts.values() if v > 1
            ),
            "partial_files": len(partial),
        }


async def scenario_interrupt(count: int = 200) -> dict[str, Any]:
    async with FakeXAIServer(image_bytes=1024, generation_latency=0.2) as server:
        with tempfile.TemporaryDirectory() as out:
            requests = [GenerateRequest(f"interrupt {i}") for i in range(count)]
            async with AsyncClient(
                api_key=server.api_key, base_url=server.base_url, rate_limit=10
            ) as client:
                task = asyncio.ensure_future(
                    run_batch(client, requests, output_dir=out, concurrency=8).collect()
                )
                await server.wait_for(lambda ledger: ledger.images_billed >= count // 4)
                task.cancel()  # a second Ctrl-C
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            first = load_manifest(Path(out) / "manifest.jsonl")
            statuses = [r.status for r in first.values()]
            sent_first = len(server.ledger.api_requests())
            sent_prompts = {
                r.body.get("prompt") for r in server.ledger.api_requests() if r.body is not None
            }
            async with AsyncClient(api_key=server.api_key, base_url=server.base_url) as client:
                second = await run_batch(
                    client, requests, output_dir=out, retry_failed=True
                ).collect()
            partial = _partials(Path(out))
        billed = server.ledger.billed_prompts
        unknown = {r.request["prompt"] for r in first.values() if r.status == "unknown"}
        return {
            "items": count,
            "api_requests_before_cancel": sent_first,
            "recorded_at_cancel": len(first),
            "recorded_unknown": statuses.count("unknown"),
            "unknown_never_sent": len(unknown - sent_prompts),
            "recorded_failed_billed": statuses.count("failed"),
            "not_recorded_resumed_as_new": count - len(first),
            "ok_after_resume": sum(o.ok for o in second),
            "prompts_billed_once": sum(1 for v in billed.values() if v == 1),
            "prompts_billed_more_than_once": sum(1 for v in billed.values() if v > 1),
            "unbilled_prompts_not_unknown": sum(
                1 for r in requests if r.prompt not in billed and r.prompt not in unknown
            ),
            "partial_files": len(partial),
        }


_ANSWER_CHILD = """
import asyncio, sys, tracemalloc
from xai_images import AsyncClient, APIResponseError
from xai_images.testing import FakeXAIServer, Reply

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

async def main(kind):
    async with FakeXAIServer() as server:
        async with AsyncClient(api_key=server.api_key, base_url=server.base_url) as client:
            await client.images.generate("warm up")
            replies = {
                "bomb": Reply.bomb(1 << 30),
                "huge": Reply.huge(200_000_000),
                "huge_chunked": Reply.huge(200_000_000, announce=False),
            }
            server.enqueue(replies[kind])
            before = hwm()
            tracemalloc.start()
            try:
                await client.images.generate("x")
                error = "none"
            except APIResponseError as exc:
                error = type(exc).__name__ + ": " + str(exc)[:90]
            peak = tracemalloc.get_traced_memory()[1] / 1048576
            print(repr({"error": error, "traced_peak_mib": round(peak, 1),
                        "rss_peak_mib": round(hwm(), 1), "rss_before_mib": round(before, 1)}))

asyncio.run(main(sys.argv[1]))
"""


async def scenario_answers() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in ("bomb", "huge", "huge_chunked"):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", _ANSWER_CHILD, kind],
            capture_output=True,
            text=True,
            check=True,
        )
        results[kind] = done.stdout.strip()
    return results


SCENARIOS = {
    "rate": scenario_rate,
    "faults": scenario_faults,
    "memory": scenario_memory,
    "resume": scenario_resume,
    "hostile": scenario_hostile,
    "interrupt": scenario_interrupt,
    "answers": scenario_answers,
}


async def main(names: list[str]) -> None:
    for name in names:
        result = await SCENARIOS[name]()
        print(f"{name}: {result}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    args = parser.parse_args()
    asyncio.run(main(list(SCENARIOS) if args.scenario == "all" else [args.scenario]))
