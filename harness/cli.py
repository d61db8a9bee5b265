"""`gwlb-conformance`: the command line (SPEC §8). Exit codes: 0 conformant, 1 a MUST failed,
2 harness or configuration error."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import secrets
import signal
import sys
from importlib.metadata import version
from pathlib import Path
from types import FrameType

import pytest

from harness.catalog import default_catalog_path, load_catalog
from harness.catalog_doc import render_markdown
from harness.descriptor import Descriptor, load_descriptor
from harness.errors import ConfigError, HarnessError
from harness.report.model import RunInfo
from harness.report.plugin import ReportPlugin
from harness import suite
from harness.suite import TestbedProvider, suite_arguments
from harness.testbed import Testbed
from harness.timers import TimersMode
from harness.topology import default_topology_path, load_topology

REPO = Path(__file__).resolve().parents[1]
DEFAULT_APPLIANCE = REPO / "appliance-images" / "reference" / "appliance.yaml"
EXIT_ERROR = 2


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _launch_text(descriptor: Descriptor) -> str:
    return descriptor.launch.command or descriptor.launch.image or ""


def run(args: argparse.Namespace) -> int:
    descriptor = load_descriptor(args.appliance)
    topology = load_topology(args.topology)
    catalog = load_catalog(default_catalog_path())
    timers = TimersMode(args.timers)
    run_id = secrets.token_hex(3)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or REPO / "reports" / f"run-{stamp}-{run_id}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    info = RunInfo(
        run_id=run_id,
        appliance_name=descriptor.name,
        appliance_version=descriptor.version,
        appliance_launch=_launch_text(descriptor),
        profile=args.profile,
        timers=timers.value,
        topology=topology.name,
        harness_version=version("gwlb-conformance"),
        kernel=platform.release(),
        started_at=datetime.datetime.now(datetime.timezone.utc),
    )
    report = ReportPlugin(catalog, info, out)
    if os.geteuid() != 0:
        raise HarnessError("run needs root: it creates network namespaces, tun devices and raw sockets")
    signal.signal(signal.SIGTERM, _interrupt)
    testbed = Testbed(topology, descriptor, timers, out, strict=args.strict)
    try:
        failure = None
        try:
            testbed.start()
        except HarnessError as error:
            failure = str(error)
            report.add_error(failure)
        pytest.main(suite_arguments(args.keyword, args.quiet), plugins=[report, suite, TestbedProvider(None if failure else testbed, failure)])
    finally:
        testbed.stop()
    result = report.result
    print(f"{result.verdict.value}: report at {out / 'index.html'}")
    return result.verdict.exit_code


def requirements(args: argparse.Namespace) -> int:
    catalog = load_catalog(default_catalog_path())
    if args.markdown:
        print(render_markdown(catalog), end="")
        return 0
    for requirement in catalog:
        print(f"{requirement.id:22} {requirement.level.value:6} {requirement.title}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gwlb-conformance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="build the testbed, run the conformance suite, write a report")
    run_parser.add_argument("--appliance", type=Path, default=DEFAULT_APPLIANCE, help="appliance.yaml (default: the reference appliance)")
    run_parser.add_argument("--topology", type=Path, default=None, help="topology YAML (default: topologies/default.yaml)")
    run_parser.add_argument("--profile", choices=["aws"], default="aws")
    run_parser.add_argument("--timers", choices=[m.value for m in TimersMode], default=TimersMode.ACCELERATED.value)
    run_parser.add_argument("--out", type=Path, default=None, help="report folder (default: reports/run-<time>-<id>)")
    run_parser.add_argument("-k", dest="keyword", default=None, help="only checks matching this pytest -k expression")
    run_parser.add_argument("--strict", action="store_true", help="also require the GWLB's source port back")
    run_parser.add_argument("--quiet", action="store_true", help="less pytest output")
    run_parser.set_defaults(func=run)
    requirements_parser = sub.add_parser("requirements", help="list the requirement catalog")
    requirements_parser.add_argument("--markdown", action="store_true", help="print docs/requirements.md")
    requirements_parser.set_defaults(func=requirements)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "topology", "") is None:
        args.topology = default_topology_path()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, HarnessError) as error:
        print(f"gwlb-conformance: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gwlb-conformance: interrupted; the testbed was removed", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
