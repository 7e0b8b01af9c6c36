"""Check the built documentation site as a reader gets it: served (run by ``.ci/run``).

Usage: ``python .ci/check_site.py SITE_DIR``.

The site is read served over HTTP (that is how it is meant to be read: search needs a server and
page links are directory URLs), so this serves SITE_DIR on 127.0.0.1 with the standard library's
static server, then:

- fetches every page, and every link and asset a page refers to inside the site: each must answer
  200, and a link's ``#fragment`` must be an id in the page it points to;
- finds no link that leaves the site for a repository file (``README.md``, ``../examples/``);
- finds the search index (``search/search_index.json`` of MkDocs, or Zensical's ``search.json``)
  with an entry for each guide page;
- finds default values, not constant names, in the API reference
  (``max_answer_bytes: int = 134217728``).

Standard library only. Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

GUIDE_PAGES = ("client", "saving", "bulk", "batch-api", "errors", "testing")
DEFAULT_SHOWN = "max_answer_bytes: int = 134217728"
CONSTANT_SHOWN = "DEFAULT_MAX_ANSWER_BYTES"


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id":
                self.ids.add(value)
            elif (name == "href" and tag in ("a", "link")) or (name == "src" and tag != "iframe"):
                self.links.append(value)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def check(site: Path) -> list[str]:
    """Every problem found in the site at ``site``, served."""
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        return _check_served(site, root)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _check_served(site: Path, root: str) -> list[str]:
    problems: list[str] = []
    pages = sorted(site.rglob("*.html"))
    if not pages:
        return [f"no HTML pages in {site}"]
    ids: dict[str, set[str]] = {}
    statuses: dict[str, int] = {}
    wanted: list[tuple[str, str, str]] = []  # (page, link as written, absolute URL)
    for page in pages:
        rel = page.relative_to(site).as_posix()
        url = urllib.parse.urljoin(root, rel.removesuffix("index.html"))
        status, body = _fetch(url)
        statuses[url.split("#")[0]] = status
        if status != 200:
            problems.append(f"{url}: HTTP {status}")
            continue
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        ids[url] = parser.ids
        for link in parser.links:
            target = urllib.parse.urljoin(url, link)
            if not target.startswith(root):
                if link.endswith(".md") or "README" in link:
                    problems.append(f"{rel}: link leaves the site for a repository file: {link}")
                continue
            wanted.append((rel, link, target))
            if link.endswith(".md") or "/README" in link:
                problems.append(f"{rel}: link to a Markdown file, not a page: {link}")
    for rel, link, target in wanted:
        address, _, fragment = target.partition("#")
        if address not in statuses:
            statuses[address], body = _fetch(address)
            if statuses[address] == 200 and address.endswith("/"):
                parser = _Links()
                parser.feed(body.decode("utf-8", "replace"))
                ids[address] = parser.ids
        if statuses[address] != 200:
            problems.append(f"{rel}: broken link {link} (HTTP {statuses[address]})")
        elif fragment and address in ids and fragment not in ids[address]:
            problems.append(f"{rel}: broken anchor {link}")
    problems += _check_search(root)
    text = _text((site / "reference" / "index.html").read_text(encoding="utf-8"))
    if DEFAULT_SHOWN not in text:
        problems.append(f"reference/index.html: no {DEFAULT_SHOWN!r}")
    if CONSTANT_SHOWN in text:
        problems.append(f"reference/index.html: shows the constant name {CONSTANT_SHOWN}")
    return problems


def _text(page: str) -> str:
    class _Text(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    parser = _Text()
    parser.feed(page)
    return " ".join("".join(parser.parts).split())


def _check_search(root: str) -> list[str]:
    for path in ("search/search_index.json", "search.json"):
        status, body = _fetch(root + path)
        if status == 200:
            break
    else:
        return ["no search index (search/search_index.json or search.json) is served"]
    try:
        index = json.loads(body)
    except ValueError:
        return [f"{path}: not JSON"]
    docs = index.get("docs", index.get("items", [])) if isinstance(index, dict) else []
    locations = {str(d.get("location", "")).split("#")[0].strip("/") for d in docs}
    missing = [p for p in GUIDE_PAGES if p not in locations and f"{p}/" not in locations]
    return [f"{path}: no entry for page {p}/" for p in missing]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    problems = list(dict.fromkeys(check(Path(argv[0]))))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in the built site")
        return 1
    print(f"site {argv[0]}: every page and link served, search index and defaults present")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
