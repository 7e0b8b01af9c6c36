"""A gRPC fake of xAI's image service, for the ``xai_sdk`` runner of ``bench_save.py``.

xai-sdk talks gRPC (``/xai_api.Image/GenerateImage``); the package's fake server
(``python -m xai_images.testing``) speaks only the REST API. This process serves the one rpc the
SDK's ``client.image.sample``/``sample_batch`` call, with the request and answer classes that
ship inside xai-sdk (``xai_sdk.proto``), on ``grpc.aio``, on 127.0.0.1 only:

- url mode (``IMG_FORMAT_URL``): the rpc POSTs the same generation to the REST fake
  (``--rest-url``, the process every other runner talks to) and answers its URLs. The images
  are registered there and downloaded from its ``/imgen/`` route, so a download costs the same
  as for the other runners. The REST fake's generation latency applies to that POST; this
  process adds none of its own.
- b64 mode (``IMG_FORMAT_BASE64``): waits ``--generation-latency`` and answers the base64 of
  the image bytes the REST fake would serve for the same prompt and index (same size and format,
  as a ``data:`` URI: the SDK cuts at ``base64,``), built here and cached.

Prints one line with its address when ready; on SIGINT or SIGTERM it stops and prints one JSON
line: its own CPU seconds (all threads) since it became ready, and the rpcs and images served.

Usage::

    python benchmarks/_grpc_fake.py --rest-url http://127.0.0.1:PORT/v1 --image-bytes 500000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
from urllib.parse import urlsplit

import aiohttp
import grpc
from xai_sdk.proto import image_pb2, image_pb2_grpc, usage_pb2

from xai_images.testing._imagegen import FORMATS, image_b64, variant_count, variant_for

HOST = "127.0.0.1"
# The SDK accepts answers up to 20 MiB; let the fake send whatever a scenario asks for.
_MAX_MESSAGE = 256 * 1024 * 1024


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class ImageService(image_pb2_grpc.ImageServicer):
    """``GenerateImage``: url mode through the REST fake, b64 mode from the cached bytes."""

    def __init__(self, args: argparse.Namespace, session: aiohttp.ClientSession) -> None:
        self.rest = args.rest_url.rstrip("/") + "/images/generations"
        self.fmt: str = args.format
        self.size: int = args.image_bytes
        self.latency: float = args.generation_latency
        self.session = session
        self.rpcs = 0
        self.images = 0

    async def GenerateImage(  # the rpc's name, as the generated servicer spells it
        self, request: image_pb2.GenerateImageRequest, context: grpc.aio.ServicerContext
    ) -> image_pb2.ImageResponse:
        """Answer n images in the requested format, or abort with a gRPC status."""
        metadata = dict(context.invocation_metadata() or ())
        if not str(metadata.get("authorization", "")).startswith("Bearer "):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing API key")
        n = request.n or 1
        model = request.model or "grok-imagine-image"
        if request.format == image_pb2.IMG_FORMAT_BASE64:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            images = [
                image_pb2.GeneratedImage(
                    base64=image_b64(
                        self.fmt,
                        self.size,
                        variant_for(f"{request.prompt}\x00{k}", self.size),
                        prefix=True,
                    ),
                    respect_moderation=True,
                )
                for k in range(n)
            ]
            ticks = 0
        else:
            body = {"model": model, "prompt": request.prompt, "n": n, "response_format": "url"}
            headers = {"Authorization": str(metadata["authorization"])}
            async with self.session.post(self.rest, json=body, headers=headers) as resp:
                answer = await resp.json()
                status = resp.status
            if status != 200:
                code = (
                    grpc.StatusCode.RESOURCE_EXHAUSTED
                    if status == 429
                    else grpc.StatusCode.UNAVAILABLE
                    if status >= 500
                    else grpc.StatusCode.INVALID_ARGUMENT
                )
                await context.abort(code, f"REST fake answered {status}: {answer}")
            images = [
                image_pb2.GeneratedImage(url=item["url"], respect_moderation=True)
                for item in answer["data"]
            ]
            ticks = int((answer.get("usage") or {}).get("cost_in_usd_ticks") or 0)
        self.rpcs += 1
        self.images += len(images)
        return image_pb2.ImageResponse(
            images=images,
            model=model,
            usage=usage_pb2.SamplingUsage(cost_in_usd_ticks=ticks),
        )


def _warm(args: argparse.Namespace) -> None:
    """Build every cached base64 image now, so that no rpc pays for it."""
    for variant in range(variant_count(args.image_bytes)):
        image_b64(args.format, args.image_bytes, variant, prefix=True)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM, then print the CPU and rpc counts as one JSON line."""
    _warm(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    options = [
        ("grpc.max_send_message_length", _MAX_MESSAGE),
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ]
    # limit=0: the clients bound the work in flight; this session only mirrors their calls.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        service = ImageService(args, session)
        server = grpc.aio.server(options=options)
        image_pb2_grpc.add_ImageServicer_to_server(service, server)
        port = server.add_insecure_port(f"{HOST}:{args.port}")
        await server.start()
        cpu0 = _cpu_s()
        print(f"xai-sdk gRPC fake on {HOST}:{port} (url images from {args.rest_url})", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop(grace=1.0)
        report = {"cpu_s": _cpu_s() - cpu0, "rpcs": service.rpcs, "images": service.images}
        print(json.dumps(report), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments (loopback only) and serve."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rest-url", required=True, help="the REST fake's base URL, ending in /v1")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    p.add_argument("--image-bytes", type=int, default=4096, help="as the REST fake's")
    p.add_argument("--format", choices=FORMATS, default="png", help="as the REST fake's")
    p.add_argument("--generation-latency", type=float, default=0.0, metavar="S")
    args = p.parse_args(argv)
    if urlsplit(args.rest_url).hostname != HOST:
        p.error(f"--rest-url must be on {HOST}")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
