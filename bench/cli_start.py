#!/usr/bin/env python3
"""Start-up time of the ``portal`` command, against a bare Python start in the same run.

Times ``portal --help`` and ``portal logs --help`` (the median of ``--runs`` runs each) and
``python -c pass`` with the same interpreter. The CLI reads no database here, but the
environment (``PORTAL_DATABASE_URL`` included) is passed through, since settings are validated
on every start. Last line: ``RESULT help_s=... logs_help_s=... python_s=... overhead_s=...``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def median_seconds(argv: list[str], runs: int) -> float:
    """Median wall time of ``argv`` over ``runs`` runs (after one warm-up run)."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=os.environ)
        if i:  # the first run warms the page cache and bytecode
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    portal = [sys.executable, "-m", "portal"]
    python_s = median_seconds([sys.executable, "-c", "pass"], args.runs)
    help_s = median_seconds([*portal, "--help"], args.runs)
    logs_help_s = median_seconds([*portal, "logs", "--help"], args.runs)
    print(f"portal --help       {help_s:.3f} s (target <= 0.25 s)")
    print(f"portal logs --help  {logs_help_s:.3f} s")
    print(f"python -c pass      {python_s:.3f} s")
    print(
        f"RESULT help_s={help_s:.3f} logs_help_s={logs_help_s:.3f} python_s={python_s:.3f} "
        f"overhead_s={help_s - python_s:.3f}"
    )


if __name__ == "__main__":
    main()
