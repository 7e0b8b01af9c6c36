"""Bulk jobs through the Batch API against the fake, and the real-time path beside them.

The fake server runs in this process (its ledger is read afterwards); each job runs in a child
process, so that the child's peak RSS is the client's alone.

- ``batch-api``: P prompts (1,000 and 10,000) through ``client.bulk(..., via="batch-api")``, the
  fake processing each request in 2 s on average (uniform 0 to 4 s, random order) and failing
  5 % of them. Checked: one batch, every id added once, every successful request's image on
  disk exactly once, no ``.part`` file, no download with the key. Reported: wall time, peak
  RSS of the client, and the time from a request finishing at the server to its image on disk
  (median, worst), taken from the fake's finish times and the manifest's ``finished_at``.
- ``realtime``: the same kind of job on the real-time path at 5 requests/s (the live limit,
  enforced by the fake) with 2 s generations, on a smaller P (10,000 would take 33 minutes);
  reported per image: request start to image on disk, and images per second.

Run: ``.venv/bin/python benchmarks/bench_batch_api.py [--counts 1000,10000] [--realtime 200]``.
With ``--baseline DIR`` every Batch API row runs twice, taking turns: once importing the
``xai_images`` package found in DIR (an older copy, labelled ``before``), once the installed one.
"images saved/s" is the successful images over the time from the first request finishing at the
fake to the last image on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xai_images import AsyncClient, GenerateRequest
from xai_images.bulk import ProgressEvent, load_manifest
from xai_images.testing import FakeXAIServer

HERE = Path(__file__).resolve()


# -- the child: one job, measured ------------------------------------------------------------------


def _peak_kib() -> int:
    """This process's peak RSS: VmHWM, not ru_maxrss, which Linux seeds with the parent's
    high-water mark at fork (this benchmark's parent holds the fake server and its batch)."""
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))


async def child(args: argparse.Namespace) -> dict[str, Any]:
    requests = (GenerateRequest(f"bench prompt {i}", id=f"p-{i}") for i in range(args.count))
    started_at: dict[str, float] = {}
    spans: list[float] = []

    def on_event(event: ProgressEvent) -> None:
        if event.item_id is None:
            return
        if event.kind == "started":
            started_at[event.item_id] = time.time()
        elif event.kind == "saved" and event.item_id in started_at:
            spans.append(time.time() - started_at.pop(event.item_id))

    async with AsyncClient(
        api_key=args.key,
        base_url=args.base_url,
        rate_limit=5.0 if args.via == "realtime" else None,
        max_retries=5,
    ) as client:
        began = time.perf_counter()
        # ``client.batch`` before the bulk job was renamed (a --baseline package may predate it).
        bulk = getattr(client, "bulk", None) or client.batch  # type: ignore[attr-defined]
        run = bulk(requests, output_dir=args.out, via=args.via, concurrency=16, on_event=on_event)
        statuses: dict[str, int] = {}
        async with run:
            async for outcome in run:
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        elapsed = time.perf_counter() - began
    peak_kib = _peak_kib()
    return {
        "seconds": elapsed,
        "statuses": statuses,
        "peak_rss_mib": peak_kib / 1024,
        "request_to_disk": _spread(spans),
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "worst": max(values)}


# -- the parent: fake server, checks, table ------------------------------------------------------


async def run_child(
    server: FakeXAIServer, via: str, count: int, out: Path, baseline: str | None = None
) -> dict[str, Any]:
    env = dict(os.environ)
    if baseline:
        env["PYTHONPATH"] = baseline
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE),
        "--child",
        "--via",
        via,
        "--count",
        str(count),
        "--out",
        str(out),
        "--base-url",
        server.base_url,
        "--key",
        server.api_key,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"child failed with {proc.returncode}")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def bench_batch_api(count: int, baseline: str | None = None) -> dict[str, Any]:
    async with FakeXAIServer(
        image_bytes=1024, batch_processing_seconds=2.0, batch_failure_rate=0.05, fault_seed=7
    ) as server:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            result = await run_child(server, "batch-api", count, out, baseline)
            ledger = server.ledger
            manifest = load_manifest(out / "manifest.jsonl")
            ok = [r for r in manifest.values() if r.status == "ok"]
            store = server._batches.store
            (batch,) = store.batches.values()
            waits = [
                r.finished_at - batch.requests[r.id].finished  # type: ignore[operator]
                for r in ok
            ]
            first_finish = min(r.finished for r in batch.requests.values() if r.finished)
            last_saved = max(r.finished_at for r in ok if r.finished_at is not None)
            files, partials = await asyncio.to_thread(_scan, out)
    checks = {
        "one_batch": ledger.batches_created == 1,
        "no_duplicate_add": max(ledger.batch_request_adds.values()) == 1,
        "every_id_added": len(ledger.batch_request_adds) == count,
        "every_success_saved": len(ok) == ledger.batch_requests_succeeded == len(files),
        "no_part_files": not partials,
        "no_key_to_image_host": ledger.downloads_with_auth == 0,
    }
    return {
        "package": "before" if baseline else "after",
        "prompts": count,
        "seconds": round(result["seconds"], 1),
        "images_saved_per_s": round(len(ok) / (last_saved - first_finish), 1),
        "ok": len(ok),
        "failed": result["statuses"].get("failed", 0),
        "add_calls": ledger.batch_adds,
        "peak_rss_mib": round(result["peak_rss_mib"], 1),
        "finish_to_disk_median_s": round(statistics.median(waits), 2),
        "finish_to_disk_worst_s": round(max(waits), 2),
        "checks": checks,
    }


def _scan(out: Path) -> tuple[list[Path], list[Path]]:
    return [p for p in out.iterdir() if p.suffix == ".png"], list(out.rglob("*.part"))


async def bench_realtime(count: int) -> dict[str, Any]:
    async with FakeXAIServer(image_bytes=1024, rps_limit=5.0, generation_latency=2.0) as server:
        with tempfile.TemporaryDirectory() as tmp:
            result = await run_child(server, "realtime", count, Path(tmp))
    spread = result["request_to_disk"] or {"median": 0.0, "worst": 0.0}
    return {
        "prompts": count,
        "seconds": round(result["seconds"], 1),
        "ok": result["statuses"].get("ok", 0),
        "images_per_s": round(count / result["seconds"], 2),
        "peak_rss_mib": round(result["peak_rss_mib"], 1),
        "request_to_disk_median_s": round(spread["median"], 2),
        "request_to_disk_worst_s": round(spread["worst"], 2),
        "rate_limited": server.ledger.rate_limited,
        "extrapolated_10000_s": round(10_000 / 5.0 + 2.0),
    }


async def parent(args: argparse.Namespace) -> None:
    for count in [int(c) for c in args.counts.split(",") if c]:
        for _ in range(args.repeat):
            if args.baseline:
                row = await bench_batch_api(count, args.baseline)
                print(json.dumps({"batch-api": row}), flush=True)
            print(json.dumps({"batch-api": await bench_batch_api(count)}), flush=True)
    if args.realtime:
        print(json.dumps({"realtime": await bench_realtime(args.realtime)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--realtime", type=int, default=200, help="prompts on the real-time path")
    parser.add_argument("--repeat", type=int, default=1, help="runs per Batch API row")
    parser.add_argument(
        "--baseline",
        help="directory holding an older xai_images package: each Batch API row also runs "
        "with it (labelled 'before'), taking turns with the installed one",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--via", default="batch-api", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        args.baseline = str(Path(args.baseline).resolve())
    if args.child:
        print(json.dumps(asyncio.run(child(args))), flush=True)
    else:
        asyncio.run(parent(args))


if __name__ == "__main__":
    main()
