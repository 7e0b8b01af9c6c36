"""``generate`` / ``edit`` on the command line never lose a paid image.

Before sending, the output directory is checked (a file where a directory is needed, a
directory that cannot be written or created): the request is refused with nothing sent. If
saving still fails after the image was paid for, each image's URL is printed and its bytes are
written to a new recovery directory under the system's temp directory, and the error says where.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import DownloadError, SaveError, XAIImagesError
from .._results._sniff import extension_for, sniff_mime

__all__ = ["check_output_dir", "save_or_recover"]


def check_output_dir(path: str | os.PathLike[str]) -> str | None:
    """Why images could not be saved into ``path`` (``None`` when they can)."""
    target = Path(path)
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        if probe == target:
            return f"{target} is not a directory"
        return f"{probe} is a file, so {target} cannot be created"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def _write_recovered(directory: Path, name: str, data: bytes) -> Path:
    mime = sniff_mime(data[:64])
    path = directory / (name + (extension_for(mime) if mime else ".bin"))
    path.write_bytes(data)
    return path


async def save_or_recover(
    response: Any, output_dir: str | os.PathLike[str], out: Callable[[str], None]
) -> list[Any]:
    """Save the response's images; if that fails, keep them and raise an error saying where.

    Raises:
        SaveError: saving failed; the message names the recovery directory.
    """
    import asyncio

    try:
        saved: list[Any] = await response.save(output_dir, on_exists="overwrite")
        return saved
    except (DownloadError, OSError) as exc:
        failure = exc
    kept: list[Path] = []
    recovery = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="xai-images-recovered-"))
    for image in response.images:
        if image.url:
            out(f"image url (paid; it expires): {image.url}")
        try:
            data = await image.read()
        except XAIImagesError:
            continue
        name = f"{image.request_id or 'image'}-{image.index}"
        kept.append(await asyncio.to_thread(_write_recovered, recovery, name, data))
    where = f"kept in {recovery}" if kept else "its URL is printed above"
    raise SaveError(
        f"the image was paid for but could not be saved to {output_dir} ({failure}); {where}",
        path=Path(output_dir),
    ) from failure
