"""`up`: build a topology with the appliance and keep it running for debugging, until Ctrl-C,
SIGTERM, SIGHUP or `down`. Its nodes are written to the run registry, where `shell` and `down`
find them; `join` reaches it through the socket of `harness/joins.py`."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from harness import joins, runs
from harness.descriptor import load_descriptor
from harness.errors import HarnessError
from harness.profiles import PROFILES
from harness.testbed import Testbed
from harness.timers import TimersMode
from harness.topology import default_topology_path, load_topology

NAME = "up"
HELP = "build a topology with the appliance and keep it running (until Ctrl-C or `down`)"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_APPLIANCE = REPO / "appliance-images" / "reference" / "appliance.yaml"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--appliance", type=Path, default=DEFAULT_APPLIANCE,
                        help="appliance.yaml (default: the reference appliance)")
    parser.add_argument("--topology", type=Path, default=None, help="topology YAML (default: topologies/default.yaml)")
    parser.add_argument("--profile", choices=list(PROFILES), default=None,
                        help="GWLB profile to emulate; replaces the topology's gwlb.profile (as in `run`)")
    parser.add_argument("--timers", choices=[m.value for m in TimersMode], default=TimersMode.ACCELERATED.value)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for logs and pcaps (default: reports/up-<time>-<id>)")
    parser.add_argument("--strict", action="store_true", help="also require the GWLB's source port back")
    parser.add_argument("--cli", action="store_true", help="open mininet's CLI instead of waiting")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _join(testbed: Testbed, record: runs.RunRecord, name: str) -> list[str]:
    """Build a late endpoint for `join`, and register its nodes so that `shell` reaches them."""
    before = set(testbed.node_pids())
    testbed.join_endpoint(name)
    record.set_nodes(testbed.node_pids())
    print(f"up: endpoint {name} joined", flush=True)
    return sorted(set(testbed.node_pids()) - before)


def execute(args: argparse.Namespace) -> int:
    descriptor = load_descriptor(args.appliance)
    topology = load_topology(args.topology or default_topology_path(args.profile), args.profile)
    if os.geteuid() != 0:
        raise HarnessError("up needs root: it creates network namespaces, tun devices and raw sockets")
    run_id = runs.new_run_id()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or REPO / "reports" / f"up-{stamp}-{run_id}").resolve()
    runs.make_folder(out)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    logging.getLogger("gwlb").setLevel(logging.INFO)
    runs.reap_dead_runs()
    with runs.RunRecord.open(run_id, NAME, out, topology.name) as record:
        testbed = Testbed(topology, descriptor, TimersMode(args.timers), out, strict=args.strict,
                          run_id=run_id, record=record)
        server = None
        try:
            testbed.start()
            record.set_nodes(testbed.node_pids())
            server = joins.JoinServer(out / joins.SOCKET_NAME, lambda name: _join(testbed, record, name))
            late = [e.name for e in topology.late_endpoints]
            print(f"up: {topology.name} is running as run {run_id} (logs and pcaps in {out})\n"
                  f"up: nodes: {', '.join(sorted(testbed.node_pids()))}\n"
                  + (f"up: late endpoints: {', '.join(late)} (`gwlb-conformance join NAME` creates one)\n" if late else "")
                  + "up: `gwlb-conformance shell NODE` opens a shell in a node; "
                  "`gwlb-conformance down` or Ctrl-C removes everything", flush=True)
            if args.cli:
                testbed.interact()
            else:
                while True:
                    signal.pause()
        except KeyboardInterrupt:
            print("up: removing the topology", file=sys.stderr)
        finally:
            runs.ignore_interrupts()
            if server is not None:
                server.close()
            testbed.stop()
    return 0
