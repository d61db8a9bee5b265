"""`shell NODE`: a shell (or one command) in a node of the topology kept up by `up`.

The shell enters only the node's network namespace, so the host's tools (tcpdump, ip, ss) are at
hand; for a Docker target the node is the container's namespace."""

from __future__ import annotations

import argparse
import os

from harness import runs
from harness.errors import HarnessError

NAME = "shell"
HELP = "open a shell (or run -c COMMAND) in a node of the topology kept up by `up`"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", help="node name: a consumer or server, an endpoint, gwlb, a1, a2, ...")
    parser.add_argument("-c", dest="command", default=None, help="run this command instead of an interactive shell")
    parser.add_argument("--run", default=None, help="run ID of the `up` to use (needed when several are up)")


def find_up(run_id: str | None) -> runs.RunEntry:
    """The live `up` run with this ID, or the only one."""
    ups = [e for e in runs.live_runs("up") if run_id in (None, e.run_id)]
    if not ups:
        wanted = f"with run ID {run_id} " if run_id else ""
        raise HarnessError(f"no topology {wanted}is up: start one with `gwlb-conformance up`")
    if len(ups) > 1:
        raise HarnessError(f"several topologies are up ({', '.join(e.run_id for e in ups)}): choose one with --run")
    return ups[0]


def execute(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise HarnessError("shell needs root: it enters a network namespace")
    entry = find_up(args.run)
    pid = entry.node_pid(args.node)
    shell = ["bash", "-c", args.command] if args.command else ["bash", "--norc", "-i"]
    env = {**os.environ, "PS1": f"[{entry.run_id} {args.node}] \\w# ", "GWLB_NODE": args.node}
    os.execvpe("nsenter", ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *shell], env)
