"""`down`: stop the topology kept up by `up` (SIGTERM to its process, which removes everything),
and remove the leftovers of any run that died without cleaning up."""

from __future__ import annotations

import argparse
import os
import signal
import time

from harness import runs
from harness.commands.shell import find_up
from harness.errors import HarnessError

NAME = "down"
HELP = "stop the topology kept up by `up`"
WAIT_S = 60


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=None, help="run ID of the `up` to stop (needed when several are up)")


def execute(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise HarnessError("down needs root")
    reaped = runs.reap_dead_runs()
    if args.run is None and not runs.live_runs("up"):
        print("down: no topology is up" + (f"; removed the leftovers of {len(reaped)} dead run(s)" if reaped else ""))
        return 0
    entry = find_up(args.run)
    if entry.harness.alive():
        os.kill(entry.harness.pid, signal.SIGTERM)
    deadline = time.monotonic() + WAIT_S
    while entry.harness.alive():
        if time.monotonic() > deadline:
            raise HarnessError(f"run {entry.run_id} (PID {entry.harness.pid}) did not stop within {WAIT_S} s")
        time.sleep(0.1)
    runs.reap_dead_runs()
    print(f"down: run {entry.run_id} ({entry.topology}) stopped")
    return 0
