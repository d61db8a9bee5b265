"""`run`: build the testbed, run the conformance suite against it, write the report, remove it."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import secrets
import signal
from importlib.metadata import version
from pathlib import Path
from types import FrameType

import pytest

from harness import runs, suite
from harness.catalog import default_catalog_path, load_catalog
from harness.descriptor import Descriptor, load_descriptor
from harness.errors import HarnessError
from harness.perf import default_thresholds_path, load_thresholds
from harness.profiles import PROFILES
from harness.report.model import RunInfo
from harness.report.plugin import ReportPlugin
from harness.suite import TestbedProvider, suite_arguments
from harness.testbed import Testbed
from harness.timers import TimersMode
from harness.topology import default_topology_path, load_topology

NAME = "run"
HELP = "build the testbed, run the conformance suite, write a report"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_APPLIANCE = REPO / "appliance-images" / "reference" / "appliance.yaml"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--appliance", type=Path, default=DEFAULT_APPLIANCE, help="appliance.yaml (default: the reference appliance)")
    parser.add_argument("--topology", type=Path, default=None,
                        help="topology YAML (default: topologies/default.yaml, or topologies/PROFILE.yaml with --profile)")
    parser.add_argument("--profile", choices=list(PROFILES), default=None,
                        help="GWLB profile to emulate; replaces the topology's gwlb.profile (default: the topology's, aws)")
    parser.add_argument("--timers", choices=[m.value for m in TimersMode], default=TimersMode.ACCELERATED.value)
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: reports/run-<time>-<id>)")
    parser.add_argument("-k", dest="keyword", default=None, help="only checks matching this pytest -k expression")
    parser.add_argument("--requirement", action="append", default=[], metavar="ID",
                        help="only the checks of this requirement (repeatable)")
    parser.add_argument("--certify", action="store_true",
                        help="certification: every check must run (no -k, no --requirement, no skips)")
    parser.add_argument("--strict", action="store_true", help="also require the GWLB's source port back")
    parser.add_argument("--perf-thresholds", type=Path, default=None, metavar="FILE",
                        help="PERF thresholds per profile (default: conformance/perf-thresholds.yaml)")
    parser.add_argument("--quiet", action="store_true", help="less pytest output")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _launch_text(descriptor: Descriptor) -> str:
    return descriptor.launch.command or descriptor.launch.image or ""


def execute(args: argparse.Namespace) -> int:
    descriptor = load_descriptor(args.appliance)
    topology = load_topology(args.topology or default_topology_path(args.profile), args.profile)
    catalog = load_catalog(default_catalog_path())
    timers = TimersMode(args.timers)
    run_id = secrets.token_hex(3)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or REPO / "reports" / f"run-{stamp}-{run_id}").resolve()
    runs.make_folder(out)
    info = RunInfo(
        run_id=run_id,
        appliance_name=descriptor.name,
        appliance_version=descriptor.version,
        appliance_launch=_launch_text(descriptor),
        profile=topology.gwlb.profile.name,
        timers=timers.value,
        topology=topology.name,
        harness_version=version("gwlb-conformance"),
        kernel=platform.release(),
        started_at=datetime.datetime.now(datetime.timezone.utc),
    )
    if args.certify and (args.keyword or args.requirement):
        raise HarnessError("--certify runs every check: it cannot be combined with -k or --requirement")
    load_thresholds(args.perf_thresholds or default_thresholds_path(), topology.gwlb.profile.name)
    unknown = [r for r in args.requirement if r not in catalog]
    if unknown:
        raise HarnessError(f"--requirement {', '.join(unknown)}: not in the catalog (see `gwlb-conformance requirements`)")
    report = ReportPlugin(catalog, info, out, descriptor=args.appliance, capture_settle_s=0.2, certify=args.certify)
    if os.geteuid() != 0:
        raise HarnessError("run needs root: it creates network namespaces, tun devices and raw sockets")
    signal.signal(signal.SIGTERM, _interrupt)
    quiet = args.quiet or os.environ.get("CI") == "true"
    if not quiet:
        logging.getLogger("gwlb").setLevel(logging.INFO)
    runs.reap_dead_runs()
    record = runs.RunRecord.open(run_id, NAME, out, topology.name)
    testbed = Testbed(topology, descriptor, timers, out, strict=args.strict, run_id=run_id, record=record)
    try:
        failure = None
        try:
            testbed.start()
        except HarnessError as error:
            failure = str(error)
            report.add_error(failure)
        needs = {r.id: r.needs for r in catalog if r.needs}
        provider = TestbedProvider(None if failure else testbed, failure, frozenset(args.requirement), needs, descriptor.claims,
                                   perf_thresholds=args.perf_thresholds)
        pytest.main(suite_arguments(args.keyword, quiet), plugins=[report, suite, provider])
    finally:
        runs.ignore_interrupts()
        try:
            testbed.stop()
        finally:
            record.close()
    result = report.result
    print(f"{result.verdict.value}: report at {out / 'index.html'}")
    return result.verdict.exit_code
