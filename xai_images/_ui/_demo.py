"""The ``xai-images demo`` job: bundled prompts and two edits, run against the in-process fake.

Nothing here needs an API key or the network: `demo_server` starts
``xai_images.testing.FakeXAIServer`` on 127.0.0.1 with small latencies (so progress bars move)
and the live API's rate limit, and `write_demo_job` writes a JSONL job file whose edits
refer to two input images drawn by the fake's own image generator.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "DEMO_BATCH_SECONDS",
    "DEMO_RPS",
    "SIMULATED",
    "demo_prompts",
    "demo_server",
    "write_demo_job",
]

DEMO_RPS = 5.0
"""Requests per second of the demo: the live API's limit, enforced by the fake without burst."""
DEMO_BATCH_SECONDS = 5.0
"""Mean processing time of a batch request in ``xai-images demo --via batch-api``."""

SIMULATED = " (simulated: xai-images demo --simulate-faults)"
"""Appended by the demo's fake server to the message of every fault it makes up."""

_EDITS = (
    ("Turn this picture into a stained-glass window", "inputs/photo-a.png", None),
    (
        "Blend <IMAGE_0> and <IMAGE_1> into one poster, bold typography",
        None,
        ["inputs/photo-a.png", "inputs/photo-b.png"],
    ),
)


def demo_prompts() -> list[dict[str, Any]]:
    """The bundled generation jobs (``demo_prompts.jsonl`` inside the package)."""
    text = resources.files("xai_images._ui").joinpath("demo_prompts.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_demo_job(directory: str | os.PathLike[str], *, count: int | None = None) -> Path:
    """Write ``jobs.jsonl`` and its two edit inputs into ``directory``; return the job file.

    Args:
        count: how many bundled prompts to use (default all 36); the two edits are always
            added.
    """
    from ..testing._imagegen import image_data

    base = Path(directory)
    inputs = base / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for variant, name in ((3, "photo-a.png"), (9, "photo-b.png")):
        path = inputs / name
        if not path.exists():
            path.write_bytes(image_data("png", 2048, variant))
    jobs = demo_prompts()
    if count is not None:
        jobs = jobs[: max(0, count)]
    lines = [json.dumps(job) for job in jobs]
    for prompt, image, images in _EDITS:
        edit: dict[str, Any] = {"prompt": prompt}
        if image is not None:
            edit["image"] = image
        if images is not None:
            edit["images"] = images
        lines.append(json.dumps(edit))
    target = base / "jobs.jsonl"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def demo_server(*, via: str = "realtime", faults: bool = False) -> Any:
    """A ``FakeXAIServer`` configured for the demo (not started: use ``async with``).

    Args:
        via: ``"batch-api"`` makes its Batch API take a few seconds per request (about
            :data:`DEMO_BATCH_SECONDS` on average, in random order), so the demo shows results
            arriving and being saved while the batch runs.
        faults: make up faults, each labelled with :data:`SIMULATED`: real-time requests
            answer 429 or 500 now and then and downloads fail (retried), and about one batch
            request in twenty fails (not retried: the item ends failed).
    """
    from ..testing import FakeXAIServer

    settings: dict[str, Any] = {}
    if via == "batch-api":
        settings["batch_processing_seconds"] = DEMO_BATCH_SECONDS
    if faults:
        settings.update(fault_label=SIMULATED, fault_seed=7)
        if via == "batch-api":
            settings["batch_failure_rate"] = 0.05
        else:
            settings.update(generation_fault_rate=0.1, download_fault_rate=0.05)
    return FakeXAIServer(
        image_bytes=6 * 1024,
        generation_latency=0.6,
        download_latency=0.05,
        rps_limit=DEMO_RPS,
        **settings,
    )
