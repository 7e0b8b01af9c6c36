"""The ``xai-images`` command: generate, edit, batch, demo and gallery.

Exit codes: 0 every item succeeded, 1 some items did not, 2 usage or configuration error
(missing key, unreachable API, unreadable job file), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from .._api._inputs import FileId
from .._api._requests import EditRequest, GenerateRequest, Request, api_fields, field_spec
from .._config import connect_hint
from .._errors import ConfigurationError, ValidationError, XAIImagesError
from .._version import __version__

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_KEY_HINT = "no API key: set XAI_API_KEY or pass --api-key"


class _UsageError(Exception):
    """A problem with the command line or the environment (exit code 2)."""


# -- argument parsing ----------------------------------------------------------------------------

_INVALID_CHOICE = re.compile(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)")


def _suggest(word: str, known: Sequence[str]) -> str:
    """``" (did you mean --rps?)"`` when ``word`` is close to one of ``known``, else ``""``."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped choice or subcommand, on every Python
    (argparse suggests by itself only from 3.14, and only when asked)."""

    def error(self, message: str) -> Any:  # argparse's signature: NoReturn
        found = _INVALID_CHOICE.search(message)
        if found and "did you mean" not in message:
            choices = [c.strip().strip("'") for c in found.group(2).split(",")]
            message += _suggest(found.group(1), choices)
        super().error(message)


def _refuse_unknown(parser: argparse.ArgumentParser, extras: Sequence[str]) -> None:
    """Exit 2 naming the arguments ``parser`` does not know, with a suggestion for each."""
    known = [o for action in parser._actions for o in action.option_strings]
    shown = [
        extra + (_suggest(extra.split("=", 1)[0], known) if extra.startswith("-") else "")
        for extra in extras
    ]
    parser.error(f"unrecognized arguments: {' '.join(shown)}")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


# -- flags made from the request fields ------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


_FILE_ID_PREFIX = "file_id:"
_INPUT_HELP = (
    "an input image: a local path, an http(s) URL, a data URI, or "
    f"{_FILE_ID_PREFIX}ID for an image in the xAI Files store; repeat to combine several"
)


def _cli_input(text: str) -> str | FileId:
    """``--image`` value: ``file_id:ID`` is a Files-store id, anything else a path or URL."""
    if text.startswith(_FILE_ID_PREFIX):
        return FileId(text[len(_FILE_ID_PREFIX) :])
    return text


def _flagged(cls: type[Any]) -> list[attrs.Attribute[Any]]:
    return [f for f in api_fields(cls) if field_spec(f).cli]


def _positional_fields(cls: type[Any]) -> list[attrs.Attribute[Any]]:
    return [f for f in _flagged(cls) if not field_spec(f).cli[0].startswith("-")]


def _cli_fields(cls: type[Any], *, only_new: bool = False) -> list[attrs.Attribute[Any]]:
    """The fields of ``cls`` given as ``--flags``; ``only_new``: those generate lacks."""
    shared = {f.name for f in attrs.fields(GenerateRequest)} if only_new else set()
    return [
        f for f in _flagged(cls) if field_spec(f).cli[0].startswith("-") and f.name not in shared
    ]


def _add_field_flags(group: Any, fields: list[attrs.Attribute[Any]]) -> None:
    for f in fields:
        spec = field_spec(f)
        if not spec.cli[0].startswith("-"):
            group.add_argument(f.name, help=spec.help)
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": spec.help}
        if spec.role == "input":
            # One input flag; repeated, its values go to the field that holds several. Its help
            # says what a command line can give (no bytes, no Python objects).
            kwargs.update(action="append", required=True, type=_cli_input)
            kwargs["help"] = _INPUT_HELP
        else:
            kwargs["type"] = _json_object if spec.cli_type is dict else spec.cli_type
        if spec.choices is not None:
            kwargs["choices"] = spec.choices
        if spec.metavar is not None:
            kwargs["metavar"] = spec.metavar
        group.add_argument(*spec.cli, **kwargs)


def _request_from(args: argparse.Namespace) -> Request:
    """The request the command line describes, built from the same fields as the flags."""
    cls = EditRequest if args.command == "edit" else GenerateRequest
    values: dict[str, Any] = {}
    for f in _flagged(cls):
        value = getattr(args, f.name, None)
        if value is not None and field_spec(f).role == "input":
            # The input flag repeats; two or more inputs go to the field holding several.
            many = next(g.name for g in attrs.fields(cls) if field_spec(g).many)
            name, value = (f.name, value[0]) if len(value) == 1 else (many, value)
            values[name] = value
        elif value is not None:
            values[f.name] = value
    return cls(**values)


def _parser() -> argparse.ArgumentParser:
    connection = _Parser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument("--api-key", help="API key (default: $XAI_API_KEY)")
    group.add_argument("--base-url", help="API root (default: $XAI_BASE_URL or the live API)")
    group.add_argument(
        "--max-retries", type=int, default=None, help="retries per API request (default 2)"
    )
    group.add_argument(
        "--shared-limit",
        metavar="URL",
        help="share the --rps budget with every process on this API key through Redis "
        "(redis://HOST:PORT/DB; needs xai-images[shared])",
    )

    display = _Parser(add_help=False)
    display.add_argument(
        "--plain", action="store_true", help="plain log lines instead of progress bars"
    )

    image_options = _Parser(add_help=False)
    opts = image_options.add_argument_group("image options")
    _add_field_flags(opts, _cli_fields(GenerateRequest))
    opts.add_argument(
        "-o",
        "--output-dir",
        default=".",
        help="where to save: a directory, file:// or an object store, s3://bucket/prefix, "
        "gs://..., az://... (needs xai-images[storage]) (default: .)",
    )
    from ._cli_storage import add_shard_flag, add_upload_flags

    add_upload_flags(opts, _positive_float)

    parser = _Parser(
        prog="xai-images",
        description="Generate and edit images with the xAI API; run resumable bulk jobs.",
        epilog="Try it without a key: xai-images demo",
    )
    parser.add_argument("--version", action="version", version=f"xai-images {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    gen = sub.add_parser(
        "generate", parents=[connection, image_options], help="generate images from a prompt"
    )
    _add_field_flags(gen, _positional_fields(GenerateRequest))

    edit = sub.add_parser(
        "edit", parents=[connection, image_options], help="edit or combine images"
    )
    _add_field_flags(edit, _positional_fields(EditRequest))
    _add_field_flags(edit, _cli_fields(EditRequest, only_new=True))
    for single in (gen, edit):
        single.add_argument(
            "--rps",
            type=_positive_float,
            default=None,
            help="requests per second (5 with --shared-limit)",
        )

    batch = sub.add_parser(
        "batch", parents=[connection, display], help="run a JSONL job file (resumable)"
    )
    batch.add_argument("jobs", metavar="JOBS.jsonl")
    batch.add_argument("-o", "--output-dir", required=True, help="images, manifest and gallery")
    batch.add_argument(
        "--rps", type=_positive_float, default=5.0, help="requests per second (default 5)"
    )
    batch.add_argument(
        "--concurrency", type=_positive_int, default=16, help="API requests in flight (16)"
    )
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again items that failed or were blocked before",
    )
    batch.add_argument(
        "--resend-unknown",
        action="store_true",
        help="send again items whose answer was lost (they may be billed twice)",
    )
    batch.add_argument(
        "--on-error",
        choices=("report", "stop"),
        default="report",
        help="a malformed job line: report it and run the rest, or stop before sending",
    )
    batch.add_argument(
        "--manifest",
        default=None,
        help="default: OUTPUT_DIR/manifest.jsonl; for an object store "
        "./xai-images-BUCKET-PREFIX.manifest.jsonl",
    )
    add_shard_flag(batch)
    add_upload_flags(batch, _positive_float)
    batch.add_argument("--no-gallery", action="store_true", help="do not write index.html")
    from ._cli_cost import add_budget_flags, add_cost_commands
    from ._cli_remote import add_via_flag, add_via_flags

    add_via_flags(batch, _positive_float)
    add_budget_flags(batch)
    add_cost_commands(sub, connection)

    demo = sub.add_parser(
        "demo", parents=[display], help="run a bulk job on the built-in fake server (no key)"
    )
    demo.add_argument("-o", "--output-dir", default="xai-images-demo")
    demo.add_argument(
        "--count", type=int, default=None, help="how many bundled prompts (default 36)"
    )
    add_via_flag(demo, "real-time calls (default) or one batch through the fake's Batch API")
    demo.add_argument(
        "--simulate-faults",
        action="store_true",
        help="let the fake server make up faults (429s, 500s, failed downloads, failed batch "
        "requests), each labelled simulated; some items may then fail (exit code 1)",
    )

    gallery = sub.add_parser("gallery", help="write index.html for a job's output directory")
    gallery.add_argument("directory")
    gallery.add_argument(
        "--manifest",
        action="append",
        default=None,
        help="default: DIRECTORY/manifest.jsonl; repeat it to show the shards of one job as one",
    )
    return parser


# -- helpers -------------------------------------------------------------------------------------


def _client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    key = args.api_key or os.environ.get("XAI_API_KEY")
    if not key or not key.strip():
        raise _UsageError(_KEY_HINT)
    kwargs: dict[str, Any] = {"api_key": key}
    base_url = args.base_url or os.environ.get("XAI_BASE_URL")
    if base_url:
        kwargs["base_url"] = base_url
    if args.max_retries is not None:
        kwargs["max_retries"] = args.max_retries
    if args.shared_limit:
        kwargs["shared_limit"] = args.shared_limit
    return kwargs


async def _probe(base_url: str, timeout: float = 5.0) -> None:
    """Fail fast when the API host does not accept connections."""
    from yarl import URL

    url = URL(base_url)
    host = url.host or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc)
        hint = connect_hint(base_url) if isinstance(exc, ConnectionRefusedError) else ""
        raise _UsageError(f"cannot reach the API at {base_url}: {reason}{hint}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _stdout() -> IO[str]:
    return sys.stdout


def _print(text: str = "") -> None:
    _stdout().write(text + "\n")


# -- generate / edit -----------------------------------------------------------------------------


def _output_dir(value: str) -> Path:
    """``-o``: a directory or a ``file://`` URL, checked before anything is sent (an
    object-store URL must never become a local folder named ``s3:``).

    Raises:
        ConfigurationError: an object-store URL (not available to this command).
        ValidationError: another URL scheme or a malformed ``file://`` URL.
    """
    from .._results._local import LocalDirectory
    from .._results._targets import output_for, shown_target

    output = output_for(value, field="--output-dir")
    if not isinstance(output, LocalDirectory):
        raise ConfigurationError(
            f"--output-dir {shown_target(value)}: this command writes to a local directory only"
        )
    return output.root


async def _single(args: argparse.Namespace) -> int:
    from .._bulk._client import AsyncClient
    from .._results._objstore import StoreOutput
    from .._results._targets import output_for
    from ._cli_storage import send_signed

    output = output_for(args.output_dir, field="--output-dir")
    store = output if isinstance(output, StoreOutput) else None
    if args.upload_urls and store is None:
        raise _UsageError("--upload-urls needs an object-store -o (s3://bucket/prefix, gs://...)")
    client_kwargs = _client_kwargs(args)
    request = _request_from(args)
    rps = args.rps if args.rps is not None or not args.shared_limit else 5.0
    from ._cli_safe import save_or_recover

    async with AsyncClient(rate_limit=rps, **client_kwargs) as client:
        await _probe(client.base_url)
        # Before anything is billed: a target that cannot be written fails the command now.
        await output.check_writable()
        if args.upload_urls and store is not None:
            stored = await send_signed(client, request, store, args.upload_expires, _print)
            return EXIT_OK if stored else EXIT_FAILED
        response = await client.images.send(request)
        saved = await save_or_recover(response, args.output_dir, _print)
        for item in saved:
            _print(str(item.path) if store is None else str(item.location))
        if response.blocked_count:
            sys.stderr.write(f"{response.blocked_count} image(s) withheld by moderation\n")
            return EXIT_FAILED
        if response.usage and response.usage.cost_usd is not None:
            sys.stderr.write(f"cost: ${response.usage.cost_usd:.4f}\n")
    return EXIT_OK


# -- batch / demo --------------------------------------------------------------------------------


def _summary(run: Any, outcomes_failed: list[Any], *, rich_console: Any = None) -> None:
    from ._cli_summary import print_summary

    print_summary(run, outcomes_failed, _print, rich_console=rich_console)


async def _run_job(client: Any, source: Any, *, plain: bool, gallery: bool, **options: Any) -> int:
    """Run a batch with progress display, Ctrl-C handling, summary and gallery."""
    from .._bulk._jobs import count_items
    from .._bulk._source_realtime import run_batch
    from ._cli_remote import drive, write_run_paths
    from ._render import make_renderer

    renderer = make_renderer(sys.stderr, plain=True if plain else None)
    run = run_batch(client, source, on_event=renderer, **options)
    run.progress.expected = await asyncio.to_thread(count_items, source)
    not_ok, cancelled = await drive(
        run, renderer, "no new items; waiting for the ones in flight (Ctrl-C again to abort them)"
    )
    _summary(run, not_ok, rich_console=getattr(renderer, "console", None))
    await write_run_paths(run, gallery, _print)
    if cancelled or run.progress.interrupted:
        remaining = run.progress.total - run.progress.done
        _print("interrupted: run the same command again to resume where it stopped")
        if remaining > 0:
            _print(f"({remaining} item(s) not finished)")
        return EXIT_INTERRUPTED
    if run.progress.budget_reached:
        from ._cli_cost import EXIT_BUDGET

        return EXIT_BUDGET
    return EXIT_FAILED if not_ok else EXIT_OK


async def _batch(args: argparse.Namespace) -> int:
    from .._bulk._client import AsyncClient
    from .._bulk._jobs import JobFileError, check_job_file
    from ._cli_storage import apply_shard, bulk_target, signed_options

    output_dir = bulk_target(args.output_dir, _output_dir)
    client_kwargs = _client_kwargs(args)
    jobs = Path(args.jobs)
    try:
        await asyncio.to_thread(check_job_file, jobs, on_error=args.on_error)
    except JobFileError as exc:
        raise _UsageError(f"{args.jobs}: {exc}") from None
    except ValidationError as exc:
        raise _UsageError(f"{args.jobs}: {exc} (nothing was sent)") from None
    except OSError as exc:
        raise _UsageError(f"cannot read {args.jobs}: {exc.strerror or exc}") from None
    manifest = Path(args.manifest) if args.manifest else None
    jobs, manifest = await asyncio.to_thread(apply_shard, jobs, args.shard, output_dir, manifest)
    if args.max_retries is None:
        # A bulk job should ride out transient 429/5xx rather than fail items.
        client_kwargs["max_retries"] = 5
    async with AsyncClient(rate_limit=args.rps, **client_kwargs) as client:
        await _probe(client.base_url)
        options: dict[str, Any] = {
            "output_dir": output_dir,
            "manifest": manifest,
            "concurrency": args.concurrency,
            "retry_failed": args.retry_failed,
            "resend_unknown": args.resend_unknown,
            "plain": args.plain,
            "gallery": not args.no_gallery,
            **signed_options(args, output_dir),
        }
        if args.max_cost is not None:
            options["max_cost"] = args.max_cost
            options["budget_name"] = args.budget_name
        if args.via == "batch-api" or args.detach or args.no_wait or args.cancel:
            from ._cli_remote import run_remote_job

            return await run_remote_job(
                client,
                jobs,
                jobs=args.jobs,
                detach=args.detach,
                wait=not args.no_wait,
                cancel=args.cancel,
                summary=_summary,
                out=_print,
                poll_interval=args.poll_interval,
                **options,
            )
        return await _run_job(client, jobs, **options)


async def _demo(args: argparse.Namespace) -> int:
    from .._bulk._client import AsyncClient
    from ._demo import DEMO_RPS, SIMULATED, demo_server, write_demo_job

    output_dir = _output_dir(args.output_dir)
    job_file = await asyncio.to_thread(write_demo_job, output_dir, count=args.count)
    sys.stderr.write(
        f"demo: starting a fake xAI API on 127.0.0.1 (limit {DEMO_RPS:g} requests/s, no key "
        f"needed); job file {job_file}\n"
    )
    if args.simulate_faults:
        sys.stderr.write(
            "demo: simulated faults are on: the fake server makes up errors, and every one it "
            f"makes up says so{SIMULATED}\n"
        )
    async with (
        demo_server(via=args.via, faults=args.simulate_faults) as server,
        AsyncClient(
            api_key=server.api_key, base_url=server.base_url, rate_limit=DEMO_RPS, max_retries=5
        ) as client,
    ):
        if args.via == "batch-api":
            from ._cli_remote import run_demo

            return await run_demo(
                client, server, job_file, output_dir, args.plain, _summary, _print
            )
        code = await _run_job(
            client, job_file, output_dir=output_dir, plain=args.plain, gallery=True
        )
        _print(
            f"fake server ledger: {server.ledger.images_billed} images billed, "
            f"{server.ledger.rate_limited} answered 429"
        )
    return code


def _gallery(args: argparse.Namespace) -> int:
    from .._bulk._gallery import write_gallery

    try:
        page = write_gallery(args.directory, manifest=args.manifest or None)
    except FileNotFoundError as exc:
        raise _UsageError(str(exc)) from None
    _print(str(page))
    return EXIT_OK


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("generate", "edit"):
        return await _single(args)
    if args.command == "batch":
        return await _batch(args)
    if args.command == "demo":
        return await _demo(args)
    if args.command in ("models", "estimate"):
        from ._cli_cost import run_cost

        return await run_cost(args, _client_kwargs(args), _print)
    return _gallery(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xai-images`` command; returns the exit code (the console script exits with it).

    Args:
        argv: the arguments without the program name (default ``sys.argv[1:]``).
    """
    parser = _parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        _refuse_unknown(sub.choices.get(args.command, parser), extras)
    try:
        if args.command == "gallery":
            return _gallery(args)
        return asyncio.run(_dispatch(args))
    except (_UsageError, ConfigurationError, ValidationError) as exc:
        sys.stderr.write(f"xai-images: error: {exc}\n")
        return EXIT_USAGE
    except XAIImagesError as exc:
        sys.stderr.write(f"xai-images: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("xai-images: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
