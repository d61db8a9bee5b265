"""PERF: what the appliance carries, next to what the harness alone carries in the same run.

    c1 ──UDP──▶ gwlbe1 ─▶ emulator ─GENEVE─▶ a1/a2 (appliance)          ─▶ emulator ─▶ s1   figure
    c1 ──UDP──▶ gwlbe1 ─▶ emulator ─GENEVE─▶ a1/a2 (reflected at eth0)  ─▶ emulator ─▶ s1   ceiling

Every figure is measured through the appliance, then with GENEVE reflected at each target's
interface (harness/reflector.py), and recorded with both values and the side that limits it
(harness/perf.py). Trials are as short as the timers mode says (perf.PARAMS): coarse in
accelerated mode, RFC 2544-like in faithful mode. PERF is INFO: a figure fails only against a
threshold of the profile (conformance/perf-thresholds.yaml), as a warning.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import checks, loadgen, perf, reflector, traffic
from harness.checks import CheckFailed
from harness.errors import HarnessError
from harness.netns import entered

if TYPE_CHECKING:
    from harness.testbed import Testbed

SINK_PORTS = tuple(loadgen.BULK_PORTS)
"""The server's sink: throughput goes to the first port, new flows to (source port, sink port) pairs."""
CONCURRENT_PORTS = checks.FreshPorts(2000, 19999)
LATENCY_SIZES = (64, 1500)
LATENCY_TIMEOUT_S = 1.0
LATENCY_WARMUP = 5
CONCURRENT_SIZE = 64 + 28


@dataclass
class Rig:
    """The consumer and server PERF sends between, the server's arrival counter and its sink."""

    testbed: Testbed
    params: perf.Params
    thresholds: perf.Thresholds
    client: str
    server: str
    server_address: str
    consumer_netns: str
    server_pid: int
    flow_ports: Iterator[tuple[int, int]]

    def received(self) -> int:
        return loadgen.rx_counter(self.server_pid, f"{self.server}-eth0")

    @contextlib.contextmanager
    def ceiling(self, on: bool) -> Iterator[None]:
        """The body measures the harness alone (reflected GENEVE) when `on`, else the appliance."""
        with reflector.reflecting(self.testbed) if on else contextlib.nullcontext():
            yield

    def _counted(self, send: Any) -> perf.Trial:
        """Run `send()` (returns loadgen.Sent), count what reached the server by the grace time after
        its last send, then let the rest drain before the next trial."""
        before = self.received()
        sent = send()
        time.sleep(max(0.0, sent.end + self.params.grace_s - time.monotonic()))
        arrived = self.received() - before
        loadgen.wait_quiet(self.received, self.params.drain_quiet_s, self.params.drain_max_s)
        return perf.Trial(sent.packets, arrived, sent.end - sent.start)

    def throughput_trial(self, size: int, rate: float) -> perf.Trial:
        return self._counted(lambda: loadgen.send(self.server_address, SINK_PORTS[0], size, rate, self.params.trial_s,
                                                  netns=self.consumer_netns))

    def new_flow_trial(self, rate: float) -> perf.Trial:
        count = max(1, round(rate * self.params.new_flow_trial_s))
        return self._counted(lambda: loadgen.send_new_flows(self.testbed.host_address(self.client), self.server_address,
                                                            self.flow_ports, count, rate, netns=self.consumer_netns))

    def round_trips(self, size: int, count: int) -> loadgen.RoundTrips:
        return loadgen.round_trips(self.server_address, checks.UDP_PORT, size, count, LATENCY_TIMEOUT_S,
                                   netns=self.consumer_netns)

    def hold(self, flows: int, first_port: int) -> int:
        """Flows of `flows` concurrent ones that echoed both rounds."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < flows + 256:
            if hard != resource.RLIM_INFINITY and hard < flows + 256:
                raise HarnessError(f"{flows} concurrent flows need {flows + 256} open files; the limit is {hard}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (flows + 256, hard))
        with entered(self.consumer_netns):
            result = traffic.udp_many(self.server_address, checks.UDP_PORT, flows, 2, self.params.concurrent_round_s,
                                      first_port)
        return result["complete_flows"]


@pytest.fixture(scope="module")
def rig(testbed: Testbed, hosts: Any, perf_thresholds: Path) -> Rig:
    server_node = testbed.node(hosts.server)
    testbed.spawn(hosts.server, [sys.executable, "-m", "harness.loadgen", "sink",
                                 *(arg for port in SINK_PORTS for arg in ("--port", str(port)))], "perf-sink.log")
    loadgen.wait_bound(server_node.pid, SINK_PORTS[-1])
    return Rig(
        testbed=testbed,
        params=perf.params_for(testbed.timers),
        thresholds=perf.load_thresholds(perf_thresholds, testbed.topology.gwlb.profile.name),
        client=hosts.client,
        server=hosts.server,
        server_address=hosts.server_address,
        consumer_netns=f"/proc/{testbed.node(hosts.client).pid}/ns/net",
        server_pid=server_node.pid,
        flow_ports=loadgen.flow_ports(1024, 65535, SINK_PORTS[1:]),
    )


def _both_sides(measure: Any, rig: Rig) -> tuple[Any, Any]:
    """(through the appliance, ceiling): `measure(None)` with GENEVE reflected first, then
    `measure(ceiling's result)` through the appliance, which may start from the ceiling's figures
    (an appliance cannot carry more than the harness offers it)."""
    with rig.ceiling(True):
        ceiling = measure(None)
    with rig.ceiling(False):
        appliance = measure(ceiling)
    return appliance, ceiling


def _top(ceiling: perf.Search | None, default: float) -> float:
    """Where a search through the appliance starts: the ceiling's rate, when it found one."""
    return ceiling.within_tolerance if ceiling is not None and ceiling.within_tolerance > 0 else default


def _expect_within(warnings: list[str]) -> None:
    if warnings:
        raise CheckFailed("PERF threshold missed: " + "; ".join(warnings))


def _trials_text(label: str, searches: dict[int, perf.Search]) -> str:
    lines = []
    for size, found in searches.items():
        trials = ", ".join(f"{t.rate:.0f}/s lost {t.loss:.2%}" for t in found.trials)
        lines.append(f"{label} {size} B: {trials}")
    return "\n".join(lines)


@pytest.mark.requirement("PERF-THROUGHPUT")
def test_throughput(rig: Rig, record_property: Any) -> None:
    params = rig.params

    def searches(ceiling: dict[int, perf.Search] | None) -> dict[int, perf.Search]:
        return {size: perf.search(lambda rate, s=size: rig.throughput_trial(s, rate),
                                  _top(ceiling and ceiling[size], params.top_pps[size]),
                                  params.search_steps, params.loss_tolerance)
                for size in params.sizes}

    appliance, ceiling = _both_sides(searches, rig)
    records = []
    for size in params.sizes:
        for criterion, figure in (("no-drop", "no_drop"), (f"loss-{params.loss_tolerance:.1%}", "within_tolerance")):
            pps, ceiling_pps = getattr(appliance[size], figure), getattr(ceiling[size], figure)
            records.append({
                "size": size, "criterion": criterion,
                "pps": round(pps), "gbps": round(perf.gbps(pps, size), 4),
                "ceiling_pps": round(ceiling_pps), "ceiling_gbps": round(perf.gbps(ceiling_pps, size), 4),
                "resolution_pps": round(appliance[size].resolution),
                "limit": perf.limiting_side(pps, ceiling_pps).value,
            })
    record_property("perf", records)
    record_property("perf_parameters", params.describe())
    record_property("details", _trials_text("appliance", appliance) + "\n" + _trials_text("ceiling", ceiling))
    _expect_within(perf.throughput_warnings(rig.thresholds, records))


@pytest.mark.requirement("PERF-LATENCY")
def test_latency(rig: Rig, record_property: Any) -> None:
    def measure(_: object) -> dict[int, loadgen.RoundTrips]:
        rig.round_trips(LATENCY_SIZES[0], LATENCY_WARMUP)
        return {size: rig.round_trips(size, rig.params.latency_samples) for size in LATENCY_SIZES}

    appliance, ceiling = _both_sides(measure, rig)
    records, warnings = [], []
    for size in LATENCY_SIZES:
        if not appliance[size].rtt_us or not ceiling[size].rtt_us:
            raise CheckFailed(f"no UDP echo of {size} bytes came back within {LATENCY_TIMEOUT_S:g} s "
                              f"(through the appliance: {len(appliance[size].rtt_us)}, ceiling: {len(ceiling[size].rtt_us)})"
                              f"\n{checks.emulator_account(rig.testbed)}")
        record: dict[str, Any] = {"size": size}
        for q in (50, 99):
            mine, base = perf.percentile(appliance[size].rtt_us, q), perf.percentile(ceiling[size].rtt_us, q)
            record |= {f"latency_p{q}_us": round(mine, 1), f"ceiling_latency_p{q}_us": round(base, 1),
                       f"added_latency_p{q}_us": round(max(0.0, mine - base), 1)}
        record["lost"] = appliance[size].lost
        record["limit"] = perf.limiting_side(record["latency_p50_us"], record["ceiling_latency_p50_us"],
                                             higher_is_better=False).value
        records.append(record)
        warnings += perf.maximum_warning(f"added round-trip latency p50 at {size} B (µs)", record["added_latency_p50_us"],
                                         rig.thresholds.added_latency_p50_us)
        warnings += perf.maximum_warning(f"added round-trip latency p99 at {size} B (µs)", record["added_latency_p99_us"],
                                         rig.thresholds.added_latency_p99_us)
    record_property("perf", records)
    record_property("perf_parameters", f"{rig.params.latency_samples} UDP round trips per size and side, one at a time")
    _expect_within(warnings)


@pytest.mark.requirement("PERF-NEW-FLOWS")
def test_new_flows_per_second(rig: Rig, new_flows: None, record_property: Any) -> None:
    params = rig.params
    appliance, ceiling = _both_sides(
        lambda ceiling: perf.search(rig.new_flow_trial, _top(ceiling, params.new_flow_top), params.new_flow_steps,
                                    params.loss_tolerance), rig)
    rate, ceiling_rate = appliance.within_tolerance, ceiling.within_tolerance
    record_property("perf", [{
        "size": 64, "new_flows_per_s": round(rate), "ceiling_new_flows_per_s": round(ceiling_rate),
        "resolution_per_s": round(appliance.resolution), "limit": perf.limiting_side(rate, ceiling_rate).value,
    }])
    record_property("perf_parameters", f"one 64-byte UDP packet per new flow; {params.new_flow_trial_s:g} s trials, "
                                       f"{1 + params.new_flow_steps} per side; at most {params.loss_tolerance:.1%} lost")
    record_property("details", _trials_text("appliance", {64: appliance}) + "\n" + _trials_text("ceiling", {64: ceiling}))
    _expect_within(perf.minimum_warning("new flows per second", rate, rig.thresholds.new_flows_per_s))


@pytest.mark.requirement("PERF-CONCURRENT-FLOWS")
def test_concurrent_flows(rig: Rig, new_flows: None, record_property: Any) -> None:
    steps = rig.params.concurrent_flows
    held: dict[bool, int] = {}
    outcomes = []
    for ceiling in (False, True):
        first = CONCURRENT_PORTS.take(max(steps))
        held[ceiling] = 0
        with rig.ceiling(ceiling):
            for flows in steps:
                complete = rig.hold(flows, first)
                outcomes.append(f"{'ceiling' if ceiling else 'appliance'} {flows} flows: {complete} echoed both rounds")
                if complete < flows * (1 - rig.params.loss_tolerance):
                    break
                held[ceiling] = flows
    record_property("perf", [{
        "size": CONCURRENT_SIZE, "concurrent_flows": held[False], "ceiling_concurrent_flows": held[True],
        "limit": perf.limiting_side(held[False], held[True]).value,
    }])
    record_property("perf_parameters", f"flow counts tried: {', '.join(map(str, steps))}; each flow echoes twice, "
                                       f"{rig.params.concurrent_round_s:g} s per round")
    record_property("details", "\n".join(outcomes))
    _expect_within(perf.minimum_warning("concurrent flows", held[False], rig.thresholds.concurrent_flows))
