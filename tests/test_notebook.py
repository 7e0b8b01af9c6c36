"""A real Jupyter kernel runs both clients against the fake server and shows images."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

CELLS = [
    # The fake server gets its own loop thread: the kernel's loop is blocked while a sync call
    # or a display runs, and the server must keep answering meanwhile.
    """
    from anyio.from_thread import start_blocking_portal
    import xai_images
    from xai_images.testing import FakeXAIServer

    server_portal_cm = start_blocking_portal()
    server_portal = server_portal_cm.__enter__()
    server = FakeXAIServer()
    server_portal.call(server.start)
    """,
    """
    async with xai_images.AsyncClient(api_key=server.api_key, base_url=server.base_url) as aclient:
        aresponse = await aclient.images.generate("an async fox", n=2)
    aresponse
    """,
    """
    client = xai_images.Client(api_key=server.api_key, base_url=server.base_url)
    response = client.images.generate("a sync fox", n=2)
    response
    """,
    """
    response.data[0]
    """,
    """
    run = client.bulk([{"prompt": f"item {i}"} for i in range(3)], output_dir="out")
    print(sorted(outcome.status for outcome in run.collect()))
    """,
    """
    client.close()
    server_portal.call(server.stop)
    server_portal_cm.__exit__(None, None, None)
    """,
]


def _data(cell: Any) -> list[dict[str, Any]]:
    return [output.get("data", {}) for output in cell.outputs if "data" in output]


def test_notebook_shows_images_from_both_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """await with AsyncClient and the sync Client both work in cells, and images render."""
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silences a jupyter_core migration warning
    # The python3 kernel of this environment (ipykernel installs it there), not a user-wide one.
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(textwrap.dedent(code).strip()) for code in CELLS]
    client = nbclient.NotebookClient(
        notebook,
        timeout=60,
        startup_timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    cells = notebook.cells
    errors = [o for c in cells for o in c.outputs if o.get("output_type") == "error"]
    assert errors == []
    # An AsyncClient's response: thumbnails by URL (its loop is the kernel's, busy in the cell).
    (shown,) = _data(cells[1])
    assert shown["text/html"].count('<img src="http://127.0.0.1:') == 2
    # A sync Client's response: thumbnails with their bytes, read through the client's loop.
    (shown,) = _data(cells[2])
    assert shown["text/html"].count('<img src="data:image/png;base64,') == 2
    (image,) = _data(cells[3])
    assert image["image/png"]
    progress = _data(cells[4])
    assert any("<progress" in shown.get("text/html", "") for shown in progress)
    assert "['ok', 'ok', 'ok']" in "".join(o.get("text", "") for o in cells[4].outputs)
