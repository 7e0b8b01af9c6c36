"""Benchmark: images into S3 (moto's server) through `StoreOutput`, against obstore's own
``put_async`` of the same bytes; memory from 1,000 to 10,000 images; and signed uploads by xAI
(the client downloads no image bytes) against the download path.

Moto's S3 server and the fake xAI server each run in their own subprocess on 127.0.0.1; every
measurement runs in a fresh child process, so its peak RSS, CPU seconds and bytes read are its
own. Keys cycle over ``--keyspace`` names (overwritten), so moto's memory stays bounded.

Usage::

    pip install -e '.[test]'
    python benchmarks/bench_store.py                       # 1,000 / 10,000 images of 500 kB
    python benchmarks/bench_store.py --images 300 --scale 3000   # a quicker run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

BUCKET = "bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("a server subprocess exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def _env(endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
    }


def _usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


# --- children ----------------------------------------------------------------------------------


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    import obstore

    import xai_images
    import xai_images.outputs
    from xai_images.testing import sample_image

    data = sample_image("png", args.size)
    target = f"s3://{BUCKET}/{args.mode}"
    output = xai_images.outputs.StoreOutput(target)
    limit = asyncio.Semaphore(args.concurrency)
    before = _usage()
    started = time.perf_counter()

    async def pool(work: Any, count: int, width: int) -> None:
        # `width` workers over a shared counter: no task per item, so memory stays flat.
        items = iter(range(count))

        async def worker() -> None:
            for i in items:
                await work(i)

        await asyncio.gather(*(worker() for _ in range(width)))

    async def sdk(i: int) -> None:
        async with limit:
            upload = await output.open(
                f"k{i % args.keyspace}.png", "image/png", on_exists="overwrite"
            )
            for start in range(0, len(data), 64 * 1024):
                await upload.write(data[start : start + 64 * 1024])
            await upload.commit()

    async def raw(i: int) -> None:
        async with limit:
            await obstore.put_async(
                output.store,
                f"k{i % args.keyspace}.png",
                data,
                attributes={"Content-Type": "image/png"},
                use_multipart=False,
            )

    images = args.images
    written: list[str] = []
    if args.mode in ("sdk", "obstore"):
        work = sdk if args.mode == "sdk" else raw
        await pool(work, images, args.concurrency)
    else:
        n = 4
        requests = images // n
        async with xai_images.AsyncClient(
            api_key="xai-fake-key", base_url=args.fake, max_concurrent_requests=args.concurrency
        ) as client:
            with tempfile.TemporaryDirectory() as tmp:

                async def signed(i: int) -> None:
                    request = xai_images.GenerateRequest(f"p{i}", n=n, id=f"r{i}")
                    result = await client.images.send_to_store(request, output)
                    assert len(result.stored) == n
                    written.extend(image.key for image in result.stored)

                async def download(i: int) -> None:
                    response = await client.images.generate(f"p{i}", n=n)
                    saved = await response.save(tmp, name=f"r{i}-{{index}}")
                    for item in saved:
                        os.unlink(item.path)

                work2 = signed if args.mode == "signed" else download
                await pool(work2, requests, args.concurrency)
        images = requests * n
    seconds = time.perf_counter() - started
    after = _usage()
    if written:  # outside the measurement: keep moto's memory small for the next run
        await obstore.delete_async(output.store, written)
    return {
        "mode": args.mode,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "cpu_ms_per_image": 1000 * (after["cpu"] - before["cpu"]) / images,
        "peak_rss_mb": after["rss_mb"],
    }


# --- harness ------------------------------------------------------------------------------------


def _run_child(mode: str, images: int, args: argparse.Namespace, env: dict[str, str]) -> Any:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--images",
        str(images),
        "--size",
        str(args.size),
        "--concurrency",
        str(args.concurrency),
        "--keyspace",
        str(args.keyspace),
        "--fake",
        args.fake,
    ]
    out = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
    # The JSON line is printed before interpreter shutdown, whose exit status is not measured.
    if not out.stdout.strip():
        raise SystemExit(f"{mode} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _with_fake(mode: str, args: argparse.Namespace, env: dict[str, str]) -> Any:
    """Run a child against a fresh fake xAI server; add the fake's ledger to its row."""
    port = _free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "xai_images.testing", "--port", str(port),
         "--image-bytes", str(args.size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        _wait_port(port, fake)
        args.fake = f"http://127.0.0.1:{port}/v1"
        row = _run_child(mode, args.images, args, env)
    finally:
        fake.terminate()
        out, _ = fake.communicate(timeout=30)
    for line in out.splitlines():
        if line.startswith("ledger: "):
            row.update(json.loads(line.removeprefix("ledger: ")))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--scale", type=int, default=10000, help="images for the RSS check")
    parser.add_argument("--size", type=int, default=500 * 1024)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--keyspace", type=int, default=200)
    parser.add_argument("--child", choices=("sdk", "obstore", "signed", "download"))
    parser.add_argument("--fake", default="")
    parser.add_argument(
        "--baseline",
        default="",
        help="a directory holding another xai_images package (git archive REV xai_images | tar "
        "-x -C DIR): its download and signed rows run too, marked 'before', against one moto",
    )
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        print(json.dumps(asyncio.run(_child(args))))
        return

    moto_port = _free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(moto_port, moto)
        endpoint = f"http://127.0.0.1:{moto_port}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")).close()
        env = _env(endpoint)
        rows = [
            _run_child("obstore", args.images, args, env),
            _run_child("sdk", args.images, args, env),
            _run_child("sdk", args.scale, args, env),
            _with_fake("download", args, env),
            _with_fake("signed", args, env),
        ]
        if args.baseline:
            before = {**env, "PYTHONPATH": os.path.abspath(args.baseline)}
            for mode in ("download", "signed"):
                row = _with_fake(mode, args, before)
                rows.append({**row, "mode": f"{mode} (before)"})
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    print(f"{args.size // 1024} kB images, concurrency {args.concurrency}, moto S3 on loopback\n")
    print(
        "| mode | images | images/s | CPU ms/image | peak RSS MB | downloaded | uploaded by fake |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['mode']} | {row['images']} | {row['images_per_s']:.1f} | "
            f"{row['cpu_ms_per_image']:.2f} | {row['peak_rss_mb']:.0f} | "
            f"{row.get('images_downloaded', '-')} | {row.get('images_uploaded', '-')} |"
        )
    raw, sdk, big, down, signed = rows[:5]
    print()
    print(f"- StoreOutput / obstore put_async: {sdk['images_per_s'] / raw['images_per_s']:.2f}x")
    print(f"- peak RSS {sdk['images']} -> {big['images']} images: "
          f"{sdk['peak_rss_mb']:.0f} -> {big['peak_rss_mb']:.0f} MB")  # fmt: skip
    print(f"- signed mode: {signed.get('images_downloaded')} image downloads, "
          f"{signed.get('images_downloaded', 0) * args.size} image bytes downloaded")  # fmt: skip
    print(f"- signed / download client CPU per image: "
          f"{signed['cpu_ms_per_image'] / down['cpu_ms_per_image']:.0%}")  # fmt: skip
    if args.baseline:
        down0, signed0 = rows[5:]
        print(f"- before: signed / download client CPU per image: "
              f"{signed0['cpu_ms_per_image'] / down0['cpu_ms_per_image']:.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
