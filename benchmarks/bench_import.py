"""Benchmark: how long ``import xai_images`` takes, against ``import aiohttp``.

Each statement runs in a fresh interpreter (``python -P -X importtime -c ...``) ``--repeat``
times, statements taking turns; the figure is the median of the cumulative import time that
``-X importtime`` reports for the top-level modules of the statement (microseconds summed over
the lines of nesting level 0), so interpreter start-up and ``site`` are not counted, and the
CPU time of the statement (``time.process_time`` around it), which the load of other processes
on a shared machine inflates much less than the wall clock. With
``--baseline DIR`` the same statements run with the package found in ``DIR`` too (before and
after in one run). Standard library only.

    python benchmarks/bench_import.py --repeat 5 --baseline /tmp/baseline
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

STATEMENTS = {
    "aiohttp": "import aiohttp",
    "xai_images": "import xai_images",
    "xai_images + AsyncClient": "import xai_images; xai_images.AsyncClient",
    "xai_images + Client": "import xai_images; xai_images.Client",
}


_TIMED = """\
import time
_t = time.process_time()
{statement}
print((time.process_time() - _t) * 1000)
"""


def import_ms(statement: str, path: str | None) -> tuple[float, float]:
    """Milliseconds of imports done by ``statement`` in a fresh interpreter: wall (by
    ``-X importtime``) and CPU."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if path:
        env["PYTHONPATH"] = path
    done = subprocess.run(
        [sys.executable, "-P", "-X", "importtime", "-c", _TIMED.format(statement=statement)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    total = 0
    skip = {"site", "encodings", "_distutils_hack"}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        # " name": nesting level 0 (nested imports are indented further).
        if not name.startswith("  ") and name.strip() not in skip:
            total += int(cumulative)
    return total / 1000, float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--baseline", help="a directory holding an older xai_images package")
    args = p.parse_args()
    rows: list[tuple[str, str | None]] = [(label, None) for label in STATEMENTS]
    if args.baseline:
        rows += [(label, args.baseline) for label in STATEMENTS if label.startswith("xai")]
    wall: dict[tuple[str, str | None], list[float]] = {row: [] for row in rows}
    cpu: dict[tuple[str, str | None], list[float]] = {row: [] for row in rows}
    for _ in range(args.repeat):
        for row in rows:
            ms, cpu_ms = import_ms(STATEMENTS[row[0]], row[1])
            wall[row].append(ms)
            cpu[row].append(cpu_ms)
    floor = statistics.median(wall[("aiohttp", None)])
    cpu_floor = statistics.median(cpu[("aiohttp", None)])
    print(f"repeat={args.repeat}, {sys.version.split()[0]}; medians, ms (min-max)")
    print("| statement | package | importtime ms | min-max | - aiohttp | CPU ms | - aiohttp |")
    print("| --- | --- | --: | --: | --: | --: | --: |")
    for row in rows:
        values = wall[row]
        median = statistics.median(values)
        cpu_median = statistics.median(cpu[row])
        package = "-" if row[0] == "aiohttp" else ("before" if row[1] else "after")
        print(
            f"| `{STATEMENTS[row[0]]}` | {package} | {median:.0f} | "
            f"{min(values):.0f}-{max(values):.0f} | {median - floor:+.0f} | "
            f"{cpu_median:.0f} | {cpu_median - cpu_floor:+.0f} |"
        )


if __name__ == "__main__":
    main()
