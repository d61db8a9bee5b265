#!/usr/bin/env python3
"""How long a topology takes to come up and to go away (issue 8's goal: up + down ≤ 3 s).

Each round builds a testbed exactly as `gwlb-conformance run` does (run registry, mininet hosts
and host-to-host veths, the emulator with its tun devices and tcpdump, one appliance process per
target), waits for every target to be healthy, and removes it. `Testbed.phases` times the steps
of `start`; `down` is `stop`. "up" is network + emulator + appliances: what the harness itself
costs. Becoming healthy is the appliance's and the health-check timers' business (with accelerated
timers, about interval × healthy threshold), so it is printed apart and not counted in up + down.

Root is needed.

    .venv/bin/python benchmarks/topology_updown.py [--rounds 5] [--topology FILE] [--appliance FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import runs
from harness.descriptor import load_descriptor
from harness.testbed import Testbed
from harness.timers import TimersMode
from harness.topology import default_topology_path, load_topology

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "appliance-images" / "reference" / "appliance.yaml"
PHASES = ("network", "emulator", "appliances", "healthy")


def one_round(topology_path: Path, appliance: Path, out: Path) -> dict[str, float]:
    topology = load_topology(topology_path)
    descriptor = load_descriptor(appliance)
    run_id = runs.new_run_id()
    with runs.RunRecord.open(run_id, "benchmark", out, topology.name) as record:
        testbed = Testbed(topology, descriptor, TimersMode.ACCELERATED, out, run_id=run_id, record=record)
        try:
            testbed.start()
        finally:
            started = time.monotonic()
            testbed.stop()
            down = time.monotonic() - started
    return {**testbed.phases, "down": down}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--topology", type=Path, default=default_topology_path())
    parser.add_argument("--appliance", type=Path, default=REFERENCE)
    args = parser.parse_args(argv)
    runs.reap_dead_runs()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="gwlb-updown-") as folder:
        for index in range(args.rounds):
            figures = one_round(args.topology, args.appliance, Path(folder) / f"round-{index}")
            figures["up"] = sum(figures[p] for p in PHASES if p != "healthy")
            figures["up+down"] = figures["up"] + figures["down"]
            rounds.append(figures)
            print("# round", index + 1, " ".join(f"{k}={v:.2f}s" for k, v in figures.items()), flush=True)
    print(f"topology {args.topology.stem}, appliance {args.appliance.parent.name}, {args.rounds} rounds (median, max):")
    for name in (*PHASES, "down", "up", "up+down"):
        values = [r[name] for r in rounds]
        print(f"{name:>10}: {statistics.median(values):6.2f} s  {max(values):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
