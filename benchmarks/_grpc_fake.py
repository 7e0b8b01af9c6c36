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
  as a ``data:`` URI: the SDK cuts at ``base64,``). Each image is encoded once, at start, as
  its serialized ``images`` entry; an answer joins the entries (protobuf appends repeated
  fields), so the fake spends ~0.3 ms instead of ~10 ms of CPU per 4-image answer on building
  and serializing 2.7 MB of message, and the runner under test keeps the cores.

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

__all__ = ["ImageService", "main", "serve"]

HOST = "127.0.0.1"
# The SDK accepts answers up to 20 MiB; let the fake send whatever a scenario asks for.
_MAX_MESSAGE = 256 * 1024 * 1024


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class ImageService(image_pb2_grpc.ImageServicer):
    """``GenerateImage``: url mode through the REST fake, b64 mode from cached entries.

    Answers serialized messages (``bytes``); :func:`_handlers` registers the rpc with the
    generated request decoder and a serializer that passes them through.
    """

    def __init__(self, args: argparse.Namespace, session: aiohttp.ClientSession) -> None:
        self.rest = args.rest_url.rstrip("/") + "/images/generations"
        self.size: int = args.image_bytes
        self.latency: float = args.generation_latency
        self.session = session
        self.rpcs = 0
        self.images = 0
        # Every variant's serialized `images` entry (field tag, length and GeneratedImage).
        self._b64_entries = [
            image_pb2.ImageResponse(
                images=[
                    image_pb2.GeneratedImage(
                        base64=image_b64(args.format, self.size, variant, prefix=True),
                        respect_moderation=True,
                    )
                ]
            ).SerializeToString()
            for variant in range(variant_count(self.size))
        ]

    async def GenerateImage(  # the rpc's name, as the generated servicer spells it
        self, request: image_pb2.GenerateImageRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        """Answer n images in the requested format (a serialized ``ImageResponse``), or abort
        with a gRPC status."""
        metadata = dict(context.invocation_metadata() or ())
        auth = str(metadata.get("authorization", ""))
        if not auth.startswith("Bearer "):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing API key")
        n = request.n or 1
        model = request.model or "grok-imagine-image"
        if request.format == image_pb2.IMG_FORMAT_BASE64:
            entries, ticks = await self._b64(request.prompt, n)
        else:
            entries, ticks = await self._url(request.prompt, model, n, auth, context)
        self.rpcs += 1
        self.images += len(entries)
        usage = usage_pb2.SamplingUsage(cost_in_usd_ticks=ticks)
        rest = image_pb2.ImageResponse(model=model, usage=usage).SerializeToString()
        return b"".join([*entries, rest])

    async def _b64(self, prompt: str, n: int) -> tuple[list[bytes], int]:
        """The cached entries of the prompt's n images, after the generation latency."""
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        entries = [self._b64_entries[variant_for(f"{prompt}\x00{k}", self.size)] for k in range(n)]
        return entries, 0

    async def _url(
        self, prompt: str, model: str, n: int, auth: str, context: grpc.aio.ServicerContext
    ) -> tuple[list[bytes], int]:
        """The same generation POSTed to the REST fake: its image URLs and its price."""
        body = {"model": model, "prompt": prompt, "n": n, "response_format": "url"}
        async with self.session.post(self.rest, json=body, headers={"Authorization": auth}) as r:
            answer = await r.json()
            status = r.status
        if status != 200:
            code = (
                grpc.StatusCode.RESOURCE_EXHAUSTED
                if status == 429
                else grpc.StatusCode.UNAVAILABLE
                if status >= 500
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            await context.abort(code, f"REST fake answered {status}: {answer}")
        entries = [
            image_pb2.ImageResponse(
                images=[image_pb2.GeneratedImage(url=item["url"], respect_moderation=True)]
            ).SerializeToString()
            for item in answer["data"]
        ]
        return entries, int((answer.get("usage") or {}).get("cost_in_usd_ticks") or 0)


def _handlers(service: ImageService) -> grpc.GenericRpcHandler:
    """The Image service with its one rpc: the generated request decoder, answers as given."""
    name = image_pb2.DESCRIPTOR.services_by_name["Image"].full_name  # "xai_api.Image"
    rpc = grpc.unary_unary_rpc_method_handler(
        service.GenerateImage,
        request_deserializer=image_pb2.GenerateImageRequest.FromString,
        response_serializer=bytes,
    )
    return grpc.method_handlers_generic_handler(name, {"GenerateImage": rpc})


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM, then print the CPU and rpc counts as one JSON line."""
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
        server = grpc.aio.server(handlers=[_handlers(service)], options=options)
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
