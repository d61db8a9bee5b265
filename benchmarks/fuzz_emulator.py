#!/usr/bin/env python3
"""Fuzz the emulator's parsing and return validation with a million mutated inputs.

Runs harness.fuzzing (seeds: the gwlbtun capture and synthetic flows) and prints the rate, the
count of every outcome, and for each distinct escaped exception a reproducer: the exact call with
its bytes in hex, plus the seed and iteration that replay the emulator's state. Exits 1 when any
exception escaped, 0 otherwise. No root needed.

    .venv/bin/python benchmarks/fuzz_emulator.py --iterations 1000000 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.fuzzing import Fuzzer, FuzzReport, capture_corpus, synthetic_corpus

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / "tests" / "data" / "gwlbtun-v3.0-route.pcap"
CHUNK = 100_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--capture", type=Path, default=CAPTURE, help="pcap whose UDP/6081 packets seed the corpus")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    fuzzer = Fuzzer(args.seed, capture_corpus(args.capture) + synthetic_corpus())
    setup_s = time.perf_counter() - started
    done = 0
    while done < args.iterations:
        step = min(CHUNK, args.iterations - done)
        report = fuzzer.run(step)
        done += step
        if not args.quiet:
            print(f"  {done:>9} iterations, {report.rate:,.0f}/s, {report.crash_count} crash(es)", file=sys.stderr, flush=True)
    report = fuzzer.report
    _print(report, setup_s, args)
    return 1 if report.crash_count else 0


def _print(report: FuzzReport, setup_s: float, args: argparse.Namespace) -> None:
    print(f"fuzz seed={report.seed} iterations={report.iterations} time={report.elapsed_s:.1f}s "
          f"setup={setup_s:.1f}s rate={report.rate:,.0f}/s crashes={report.crash_count}")
    width = max(len(name) for name in report.outcomes)
    for name, count in sorted(report.outcomes.items()):
        print(f"outcome {name:<{width}} {count:>9}")
    for crash in report.crashes:
        print(f"\nCRASH in {crash.target} at iteration {crash.iteration}: {crash.error}")
        print(f"reproducer: {crash.call}")
        print(f"replay the state: benchmarks/fuzz_emulator.py --seed {report.seed} --iterations {crash.iteration + 1}")
        if crash.traceback:
            print(crash.traceback.rstrip())
    if report.crash_count > len(report.crashes):
        print(f"\n{report.crash_count} crashes in all; {len(report.crashes)} distinct ones shown")


if __name__ == "__main__":
    sys.exit(main())
