"""Peak memory of a CLI bulk job against its size, on both paths (issue 17, item 8).

Runs ``xai-images batch JOBS -o OUT`` as its own process against the fake API (``python -m
xai_images.testing``, another process, so its memory is not counted) for jobs of tiny items
(64-byte images), through the real-time path and through the Batch API, and reports the peak
RSS (``VmHWM`` of the CLI process alone, as it ends) at each size and the growth per item
between the two sizes. Target: at most 200 bytes per item between 10,000 and 100,000 items.

    python benchmarks/bench_bulk_memory.py                  # 10,000 and 100,000, both paths
    python benchmarks/bench_bulk_memory.py --sizes 2000 20000 --paths realtime
    python benchmarks/bench_bulk_memory.py --paths batch-api --repeat 3   # median of 3 peaks

``PYTHONPATH=/path/to/other/checkout`` measures another copy of the package (before/after).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PATHS = ("realtime", "batch-api")


def _start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xai_images.testing", "--port", "0", "--image-bytes", "64"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = next(word for word in line.split() if word.startswith("http://"))
    return proc, url


def _write_job(path: Path, count: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(count):
            fh.write(json.dumps({"prompt": f"tiny item {i}", "id": f"i{i}"}) + "\n")


# The CLI, reporting its own peak RSS as it ends: the VmHWM of its memory map, which starts
# empty at exec. (Not ru_maxrss from wait4: Linux folds the RSS high-water mark of the memory the
# child had before exec, the benchmark's own copied at fork, into the child's ru_maxrss, so once
# this process had read a 100,000-line manifest every later child reported at least its size.)
_CHILD = """
import os, sys
from xai_images._ui._cli import main
try:
    code = main()
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["XAI_BENCH_PEAK_FILE"], "w") as report:
        report.write(peak)
sys.exit(code)
"""


def _run_cli(url: str, job: Path, out: Path, via: str) -> tuple[float, float, int]:
    """Run one CLI job; return (peak RSS in MB, seconds, exit code)."""
    cmd = [
        sys.executable,
        "-c",
        _CHILD,
        "batch",
        str(job),
        "-o",
        str(out),
        "--base-url",
        url,
        "--api-key",
        "bench",
        "--rps",
        "100000",
        "--concurrency",
        "32",
        "--no-gallery",
        "--plain",
        "--via",
        via,
        "--poll-interval",
        "0.2",
    ]
    report = out.parent / "peak.txt"
    env = {**os.environ, "XAI_BENCH_PEAK_FILE": str(report)}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    code = proc.wait()
    seconds = time.perf_counter() - started
    return int(report.read_text()) / 1024, seconds, code  # VmHWM is in KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(10_000, 100_000))
    parser.add_argument("--paths", nargs="+", choices=_PATHS, default=list(_PATHS))
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per size; the median peak counts"
    )
    args = parser.parse_args()
    fake, url = _start_fake()
    try:
        for via in args.paths:
            peaks = []
            for count in args.sizes:
                runs = []
                for _ in range(args.repeat):
                    with tempfile.TemporaryDirectory(prefix="xai-bench-mem-") as tmp:
                        job = Path(tmp) / "jobs.jsonl"
                        _write_job(job, count)
                        peak, seconds, code = _run_cli(url, job, Path(tmp) / "out", via)
                        manifest = Path(tmp) / "out" / "manifest.jsonl"
                        lines = manifest.read_bytes().count(b"\n") if manifest.exists() else 0
                    runs.append(peak)
                    print(
                        f"{via:<9} {count:>7} items: peak RSS {peak:7.1f} MB, {seconds:6.1f} s, "
                        f"exit {code}, {lines} manifest lines",
                        flush=True,
                    )
                peaks.append(statistics.median(runs))
            small, large = args.sizes
            per_item = (peaks[1] - peaks[0]) * 1024 * 1024 / (large - small)
            print(
                f"{via:<9} growth: {per_item:.0f} bytes per item (target <= 200); median peaks "
                f"{peaks[0]:.1f} / {peaks[1]:.1f} MB",
                flush=True,
            )
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
