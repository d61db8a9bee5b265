"""Command line: parse options, start the health endpoint and the data path, stop cleanly on signals."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from .datapath import Config, Datapath
from .faults import FAULTS, FaultSet, Point
from .health import start_health

log = logging.getLogger("refappliance")


def build_parser() -> argparse.ArgumentParser:
    faults = "\n".join(f"  {f.name:22} {f.help}" for f in FAULTS.values())
    parser = argparse.ArgumentParser(
        prog="refappliance",
        description="Reference GENEVE appliance for a Gateway Load Balancer (gwlbtun-style tun pairs).",
        epilog=f"faults (--fault NAME, repeatable):\n{faults}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--health-port", type=int, default=8080, help="HTTP health/stats port (default 8080)")
    parser.add_argument("--create-hook", type=Path, help="run as HOOK CREATE <gwi> <gwo> <vpce-id> per new tun pair")
    parser.add_argument("--destroy-hook", type=Path,
                        help="run as HOOK DESTROY ... on shutdown (default: the create hook)")
    parser.add_argument("--tun-mtu", type=int, default=8500, help="MTU of the tun devices (default 8500)")
    parser.add_argument("--flow-timeout", type=float, default=350.0,
                        help="idle seconds before a flow is forgotten (default 350)")
    parser.add_argument("--fault", action="append", default=[], choices=list(FAULTS), metavar="NAME",
                        help="inject a named misbehaviour (see below)")
    parser.add_argument("--verbose", action="store_true", help="log every packet")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faults = FaultSet(args.fault)
    config = Config(tun_mtu=args.tun_mtu, flow_timeout=args.flow_timeout,
                    create_hook=args.create_hook, destroy_hook=args.destroy_hook or args.create_hook)
    try:
        datapath = Datapath(config, faults)
        health = None
        if faults.apply(Point.HEALTH_PROCESS, False):
            if os.fork() == 0:
                start_health(args.health_port, snapshot=lambda: {}, status=lambda: 200)
                while True:
                    signal.pause()
        else:
            health = start_health(
                args.health_port,
                snapshot=datapath.snapshot,
                status=lambda: faults.apply(Point.HEALTH, 200),
                delay=lambda: faults.apply(Point.HEALTH_DELAY, (datapath.stats.packets_in, 0.0))[1],
            )
    except OSError as error:
        log.error("cannot start: %s", error)
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: datapath.stop())
    log.info("listening on UDP %d, health on TCP %d, faults: %s", config.port, args.health_port,
             ", ".join(faults.names) or "none")
    try:
        datapath.run()
    finally:
        if health is not None:
            health.shutdown()
        datapath.close()
    log.info("stopped")
    return 0
