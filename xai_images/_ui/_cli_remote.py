"""``xai-images batch ... --via batch-api``: run, detach, re-attach, cancel; progress and summary.

Ctrl-C never cancels the remote batch: the first press stops polling (saves in flight finish
and are recorded), the second aborts them. Running the same command again re-attaches.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._bulk._batchapi_state import RemoteProgress
    from .._bulk._client import AsyncClient

__all__ = [
    "add_via_flags",
    "collect_command",
    "drive",
    "run_demo",
    "run_remote_job",
    "write_run_paths",
]

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def add_via_flag(parser: argparse._ActionsContainer, help: str) -> None:
    """Add ``--via realtime|batch-api`` (default ``realtime``) with ``help``."""
    parser.add_argument("--via", choices=("realtime", "batch-api"), default="realtime", help=help)


def add_via_flags(batch: argparse.ArgumentParser, seconds: Callable[[str], float]) -> None:
    """Add ``--via``, ``--detach``, ``--no-wait``, ``--cancel`` and ``--poll-interval``."""
    group = batch.add_argument_group("through xAI's Batch API (--via batch-api)")
    add_via_flag(group, "real-time calls at --rps (default), or one server-side batch")
    group.add_argument(
        "--detach", action="store_true", help="submit, record, print the batch id, exit"
    )
    group.add_argument("--no-wait", action="store_true", help="save what finished, then exit")
    group.add_argument("--cancel", action="store_true", help="cancel the batch, save what finished")
    group.add_argument(
        "--poll-interval",
        type=seconds,
        default=2.0,
        metavar="SECONDS",
        help="first wait between polls; grows to 30 s while nothing arrives (default 2)",
    )


def collect_command(jobs: str | Path, output_dir: Path | str, manifest: Path | None) -> str:
    """The command that re-attaches to a job's batch and collects its results."""
    parts = ["xai-images", "batch", str(jobs), "-o", str(output_dir), "--via", "batch-api"]
    if manifest is not None:
        parts += ["--manifest", str(manifest)]
    return shlex.join(parts)


async def drive(run: Any, renderer: Any, stopping: str) -> tuple[list[Any], bool]:
    """Iterate a bulk run under ``renderer``: the first Ctrl-C stops it (``stopping`` says what
    that means), the second cancels. Returns the outcomes not ok and whether it was cancelled."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    presses = 0

    def on_sigint() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            sys.stderr.write(f"\nstopping: {stopping}\n")
            run.stop()
        elif main_task is not None:
            main_task.cancel()

    installed = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    not_ok: list[Any] = []
    cancelled = False
    try:
        with renderer:
            async with run:
                async for outcome in run:
                    if not outcome.ok:
                        not_ok.append(outcome)
    except asyncio.CancelledError:
        cancelled = True
        run.progress.interrupted = True
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
    return not_ok, cancelled


async def write_run_paths(run: Any, gallery: bool, out: Callable[[str], None]) -> None:
    """Print where the images and the manifest are; write and print the gallery."""
    store = getattr(run, "_store", None)
    out(f"images:   {run.target}")
    out(f"manifest: {run.manifest_path}")
    if store is not None:
        # A store job's gallery page and manifest copy were uploaded beside the images.
        for location in store.uploaded:
            out(f"uploaded: {location}")
        if store.spilled:
            out(
                f"spilled:  {store.spilled} image(s) could not be stored; kept in {store.spill_dir}"
            )
        return
    if gallery and run.manifest_path.exists():
        from .._bulk._gallery import write_gallery

        page = await asyncio.to_thread(write_gallery, run.output_dir, manifest=run.manifest_path)
        out(f"gallery:  {page}")


def _margin_line(progress: RemoteProgress) -> str | None:
    margin = progress.margin()
    if margin is None:
        return None
    median, worst = margin
    return (
        f"results waited {median:.1f} s (median), {worst:.1f} s (worst) before being saved; "
        "batch image URLs expire 1 h after each request finishes"
    )


async def run_remote_job(
    client: AsyncClient,
    source: Any,
    *,
    jobs: str | Path | None = None,
    output_dir: Path | str,
    manifest: Path | None = None,
    plain: bool,
    gallery: bool = True,
    cancel: bool = False,
    summary: Callable[..., None],
    out: Callable[[str], None],
    **options: Any,
) -> int:
    """Run a job through the Batch API with progress, Ctrl-C handling, summary and gallery.

    ``jobs``: the job file as the user named it, for the command that collects a detached run
    (default: ``source``, the job file itself).
    """
    from .._bulk._jobs import count_items
    from .._bulk._source_batchapi import RemoteBatchRun
    from ._render import make_renderer

    renderer = make_renderer(sys.stderr, plain=True if plain else None)
    console = getattr(renderer, "console", None)
    last_line = [""]

    def on_poll(progress: RemoteProgress) -> None:
        line = progress.server_line()
        if line == last_line[0]:
            return
        last_line[0] = line
        if console is not None:
            console.print(line, highlight=False, markup=False)
        else:
            _write(sys.stderr, line)

    run = RemoteBatchRun(
        client,
        source,
        output_dir=output_dir,
        manifest=manifest,
        on_event=renderer,
        cancel=cancel,
        on_poll=on_poll,
        **options,
    )
    run.progress.expected = await asyncio.to_thread(count_items, source)
    not_ok, cancelled = await drive(
        run,
        renderer,
        "the batch keeps running at xAI (it is not cancelled); saving what is in flight "
        "(Ctrl-C again to abort)",
    )
    command = collect_command(source if jobs is None else jobs, output_dir, manifest)
    if run.detached:
        out(f"batch:    {run.batch_id}")
        out(f"manifest: {run.manifest_path}")
        out(f"detached: {run.progress.started} request(s) at xAI; collect the results with:")
        out(f"  {command}")
        return EXIT_OK
    p = run.progress
    summary(run, not_ok, rich_console=console)
    if p.expired:
        out(f"expired:  {p.expired} item(s) billed but their URLs expired before saving")
    margin = _margin_line(p)
    if margin is not None:
        out(margin)
    if run.batch_id is not None:
        out(p.server_line())
    if run.cancelled_by_xai:
        out(f"xAI cancelled the batch: {run.cancelled_by_xai}")
    await write_run_paths(run, gallery, out)
    waiting = p.in_flight
    if waiting > 0:
        out(f"{waiting} request(s) still at xAI; collect them with:")
        out(f"  {command}")
    if run.not_submitted and cancel:
        out(f"{len(run.not_submitted)} item(s) not submitted: --cancel submits nothing")
    elif run.not_submitted:
        out(
            f"{len(run.not_submitted)} item(s) to run again wait for the current batch to "
            "finish; run the same command again then"
        )
    if cancelled or p.interrupted:
        return EXIT_INTERRUPTED
    if p.budget_reached:
        from ._cli_cost import EXIT_BUDGET

        return EXIT_BUDGET
    return EXIT_FAILED if not_ok else EXIT_OK


def _write(stream: IO[str], text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


async def run_demo(
    client: AsyncClient,
    server: Any,
    job_file: Path,
    output_dir: Path,
    plain: bool,
    summary: Callable[..., None],
    out: Callable[[str], None],
) -> int:
    """``xai-images demo --via batch-api``: the demo job through the fake's Batch API."""
    code = await run_remote_job(
        client,
        job_file,
        output_dir=output_dir,
        plain=plain,
        summary=summary,
        out=out,
        poll_interval=0.5,
    )
    ledger = server.ledger
    out(
        f"fake server ledger: {ledger.batches_created} batch, {ledger.batch_adds} add "
        f"call(s), {ledger.batch_images_billed} images billed, "
        f"{ledger.downloads_with_auth} downloads carried the key"
    )
    return code
