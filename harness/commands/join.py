"""`join ENDPOINT`: create a `joins: late` endpoint in the topology kept up by `up`, as a consumer
creates one against a running endpoint service; traffic through the others keeps flowing."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness import joins
from harness.commands.shell import find_up
from harness.errors import HarnessError

NAME = "join"
HELP = "create a `joins: late` endpoint in the topology kept up by `up`"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", help="name of an endpoint marked `joins: late` in the topology")
    parser.add_argument("--run", default=None, help="run ID of the `up` to use (needed when several are up)")


def execute(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise HarnessError("join needs root")
    entry = find_up(args.run)
    nodes = joins.request_join(Path(entry.out) / joins.SOCKET_NAME, args.endpoint)
    print(f"join: endpoint {args.endpoint} joined run {entry.run_id} ({entry.topology}); new nodes: {', '.join(nodes)}")
    return 0
