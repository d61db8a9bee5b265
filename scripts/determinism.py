#!/usr/bin/env python3
"""Runs the suite N times against one appliance and checks every run gives the same verdict and
the same status for every requirement (issue: a certification is worth only repeatable verdicts).

Usage: .venv/bin/python scripts/determinism.py [--runs 20] [--appliance FILE] [--topology FILE]
Exits 1 if any run differs from the first; prints one line per run and a summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(out: Path, extra: list[str]) -> tuple[str, dict[str, str], float]:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", "--quiet", "--out", str(out), *extra],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    results = json.loads((out / "results.json").read_text())
    return results["verdict"], {r["id"]: r["status"] for r in results["requirements"]}, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--appliance", type=Path)
    parser.add_argument("--topology", type=Path)
    args = parser.parse_args()
    extra = [*(["--appliance", str(args.appliance)] if args.appliance else []),
             *(["--topology", str(args.topology)] if args.topology else [])]
    first: tuple[str, dict[str, str]] | None = None
    differing = 0
    with tempfile.TemporaryDirectory(prefix="gwlb-determinism-") as folder:
        for index in range(args.runs):
            verdict, statuses, seconds = one_run(Path(folder) / f"run-{index}", extra)
            if first is None:
                first = (verdict, statuses)
            changed = {r: (first[1].get(r), s) for r, s in statuses.items() if first[1].get(r) != s}
            same = verdict == first[0] and not changed
            differing += not same
            print(f"run {index + 1:2}: {verdict:15} {seconds:5.1f} s {'same' if same else f'DIFFERS: {changed}'}")
    print(f"determinism: {args.runs - differing} of {args.runs} runs gave the first run's verdict and statuses")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
