"""The gallery page: content, escaping, relative paths, and a real headless-browser check."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xai_images.bulk import FileRecord, ManifestRecord, write_gallery
from xai_images.testing import sample_image


def make_job(directory: Path) -> list[ManifestRecord]:
    """Three images in three formats, one failed item, and a prompt with HTML in it."""
    records = []
    for i, fmt in enumerate(("png", "jpeg", "webp")):
        ext = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}[fmt]
        name = f"item {i}-0{ext}"  # a space, to check URL-encoding of file names
        path = directory / name
        path.write_bytes(sample_image(fmt, 2048, i))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        records.append(
            ManifestRecord(
                id=f"item{i}",
                kind="generate",
                request={"prompt": f"<b>prompt</b> & {i}", "quality": "high"},
                status="ok",
                files=(
                    FileRecord(
                        name,
                        path.stat().st_size,
                        digest,
                        None,
                        f"rev {i}",
                    ),
                ),
                cost_in_usd_ticks=200_000_000,
                model="grok-imagine-image",
            )
        )
    records.append(
        ManifestRecord(
            id="broken",
            kind="generate",
            request={"prompt": "never made"},
            status="failed",
            error="500 POST /v1/images/generations: boom <x>",
            error_type="InternalServerError",
            line=7,
        )
    )
    return records


def render_gallery(records: list[ManifestRecord], directory: Path) -> str:
    """The page ``write_gallery`` makes from a manifest holding ``records``."""
    lines = [json.dumps(r.to_json()) for r in records]
    (directory / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return write_gallery(directory).read_text(encoding="utf-8")


def test_page_lists_images_metadata_and_failures(tmp_path: Path) -> None:
    """Thumbnails, prompt, revised prompt, model, size, cost and failures are on the page."""
    page = render_gallery(make_job(tmp_path), tmp_path)
    assert 'src="item%200-0.png"' in page
    assert "rev 1" in page
    assert "grok-imagine-image" in page
    assert "64x64" in page
    assert "$0.0200" in page
    assert "broken" in page
    assert "InternalServerError: 500 POST /v1/images/generations: boom &lt;x&gt;" in page


def test_text_is_escaped(tmp_path: Path) -> None:
    """Prompts and errors are HTML-escaped, never injected as markup."""
    page = render_gallery(make_job(tmp_path), tmp_path)
    assert "<b>prompt</b>" not in page
    assert "&lt;b&gt;prompt&lt;/b&gt; &amp; 0" in page


def test_page_is_self_contained(tmp_path: Path) -> None:
    """No scripts and no network references: only relative image paths."""
    page = render_gallery(make_job(tmp_path), tmp_path)
    assert "<script" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_write_gallery_reads_the_manifest(tmp_path: Path) -> None:
    """write_gallery builds index.html from manifest.jsonl (latest record per id)."""
    lines = [json.dumps(r.to_json()) for r in make_job(tmp_path)]
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    page = write_gallery(tmp_path)
    assert page == tmp_path / "index.html"
    assert "item2" in page.read_text()


def test_write_gallery_without_manifest_raises(tmp_path: Path) -> None:
    """No manifest, no gallery: a clear FileNotFoundError."""
    with pytest.raises(FileNotFoundError, match="no manifest"):
        write_gallery(tmp_path)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_image_dimensions_from_headers(tmp_path: Path, fmt: str) -> None:
    """Width and height are read from PNG, JPEG and WebP headers."""
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(sample_image(fmt, 4096, 0))
    record = ManifestRecord(
        id="x",
        kind="generate",
        request={"prompt": "p"},
        status="ok",
        files=(FileRecord(path.name, path.stat().st_size, "0" * 64),),
    )
    assert "64x64" in render_gallery([record], tmp_path)


def _browser() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(
    _browser() is None,
    reason="no headless browser (install Debian's chromium package to run this check)",
)
def test_every_image_loads_in_a_real_browser(tmp_path: Path) -> None:
    """Headless Chromium opens the page from disk and every thumbnail decodes."""
    make_records = make_job(tmp_path)
    page = render_gallery(make_records, tmp_path)
    # The gallery itself has no scripts; a probe copy reports each image's decoded width.
    probe = page.replace(
        "</body>",
        "<script>window.addEventListener('load', () => {"
        "const w = [...document.images].map(i => i.complete ? i.naturalWidth : -1);"
        "document.body.setAttribute('data-widths', w.join(','));});</script></body>",
    )
    target = tmp_path / "probe.html"
    target.write_text(probe, encoding="utf-8")
    browser = _browser()
    assert browser is not None
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            target.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    found = re.search(r'data-widths="([^"]*)"', result.stdout)
    assert found, result.stderr[-2000:]
    widths = [int(w) for w in found.group(1).split(",")]
    assert widths == [64, 64, 64]
