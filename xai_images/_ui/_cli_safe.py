"""``generate`` / ``edit`` on the command line never lose a paid image.

Before sending, the command checks the output directory (``LocalDirectory.check_writable``).
If saving still fails after the image was paid for, each image's URL is printed and its bytes
are written to a new recovery directory under the system's temp directory, and the error says
where.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import DownloadError, SaveError, XAIImagesError
from .._results._sniff import extension_for, sniff_mime

__all__ = ["save_or_recover"]


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
