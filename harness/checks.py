"""The vocabulary of conformance checks: send real traffic through the testbed, then read what
the emulator saw. Failures raise `CheckFailed` with expected vs observed and the emulator's own
account (drop reasons, rejected header bytes), so a report reader can act without a rerun.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.errors import HarnessError
from harness.launchers import stop_process
from harness.testbed import Testbed

TCP_PORT = 5001
UDP_PORT = 5002
CLOSED_PORT = 5009
PROTO_ICMP, PROTO_TCP, PROTO_UDP = 1, 6, 17


class CheckFailed(AssertionError):
    """A conformance check saw the appliance misbehave. Keyword arguments are report properties
    (harness/report/properties.py: expected_header, observed_header, drops, rejects, ...) that the
    report shows with the failure."""

    def __init__(self, message: str, **report_properties: Any) -> None:
        super().__init__(message)
        self.report_properties = report_properties


def traffic(testbed: Testbed, node: str, *args: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """Run a `harness.traffic` client in a node and return its JSON report."""
    return traffic_json(testbed, node, [sys.executable, "-m", "harness.traffic", *args], timeout_s)


def traffic_json(testbed: Testbed, node: str, command: list[str], timeout_s: float = 30.0) -> dict[str, Any]:
    """Run a command that prints one JSON line in a node, and return what it printed."""
    out = testbed.run(node, command, timeout_s)
    return json.loads(out.strip().splitlines()[-1])


def start_echo_servers(testbed: Testbed, node: str) -> None:
    for kind, port in (("tcp-server", TCP_PORT), ("udp-server", UDP_PORT)):
        testbed.spawn(node, [sys.executable, "-m", "harness.traffic", kind, "--port", str(port)], f"{node}-{kind}.log")


def tcp_exchange(testbed: Testbed, client: str, server: str, size: int, source_port: int = 0, reset: bool = False) -> dict[str, Any]:
    args = ["tcp-client", "--host", testbed.host_address(server), "--port", str(TCP_PORT), "--size", str(size)]
    if source_port:
        args += ["--source-port", str(source_port)]
    if reset:
        args.append("--reset")
    return traffic(testbed, client, *args)


def udp_exchange(
    testbed: Testbed,
    client: str,
    server: str,
    inner_size: int,
    count: int,
    port: int = UDP_PORT,
    timeout_s: float = 2.0,
    source_port: int = 0,
    tag: str = "",
    start_at: float = 0.0,
) -> dict[str, Any]:
    args = ["udp-client", "--host", testbed.host_address(server), "--port", str(port), "--size", str(inner_size),
            "--count", str(count), "--timeout", str(timeout_s), "--source-port", str(source_port)]
    if tag:
        args += ["--tag", tag]
    if start_at:
        args += ["--start-at", str(start_at)]
    return traffic(testbed, client, *args)


def udp_many(
    testbed: Testbed, client: str, server: str, flows: int, rounds: int, round_timeout_s: float = 5.0, first_port: int = 0
) -> dict[str, Any]:
    return traffic(testbed, client, "udp-many", "--host", testbed.host_address(server), "--port", str(UDP_PORT),
                   "--flows", str(flows), "--rounds", str(rounds), "--timeout", str(round_timeout_s),
                   "--first-port", str(first_port), timeout_s=60)


class FreshPorts:
    """Source-port ranges no earlier flow of the run used, so the GWLB sees only new flows. They lie
    below Linux's ephemeral ports (32768-60999), which other checks' clients pick at random."""

    def __init__(self, first: int = 20000, last: int = 29999) -> None:
        self._next, self._last = first, last

    def take(self, count: int) -> int:
        if self._next + count > self._last:
            raise HarnessError("the check ran out of fresh source ports")
        first, self._next = self._next, self._next + count
        return first


def ping(testbed: Testbed, client: str, server: str, count: int = 3, inner_size: int = 84) -> tuple[int, str]:
    """(replies received, ping's summary) for ICMP echo of `inner_size`-byte IPv4 packets."""
    node = testbed.node(client)
    out = node.cmd(f"ping -n -q -c {count} -i 0.2 -W 1 -M do -s {inner_size - 28} {testbed.host_address(server)}")
    summary = next((line for line in out.splitlines() if "packets transmitted" in line), out.strip())
    received = int(summary.split(",")[1].split()[0]) if "received" in summary else 0
    return received, summary


def forced_stickiness_note(testbed: Testbed) -> str:
    """For skip reasons: ' (profile P always hashes S)' when the profile, not the topology, chose."""
    profile = testbed.topology.gwlb.profile
    if profile.forced_stickiness is None:
        return ""
    return f" (profile {profile.name} always hashes {profile.forced_stickiness.value})"


def flows_of(testbed: Testbed, protocol: int, address: str, port: int | None = None) -> list[dict[str, Any]]:
    """The emulator's flows of `protocol` that have (`address`, `port`) as one end (under 3- or
    2-tuple stickiness flows carry no ports, and under 2-tuple no protocol, so those match any)."""
    found = []
    for flow in testbed.control.get("/flows"):
        if flow["protocol"] not in (protocol, 0):
            continue
        if any(ip == address and (port is None or p in (port, 0)) for ip, p in flow["ends"]):
            found.append(flow)
    return found


def emulator_account(testbed: Testbed, limit: int = 5) -> str:
    """What the emulator dropped and why, with the last rejected headers: for failure messages."""
    metrics = testbed.control.get("/metrics")
    lines = [f"emulator drops: {metrics['drops'] or 'none'}"]
    for reject in testbed.control.get("/rejects")[-limit:]:
        header = f" header {reject['header']}" if reject["header"] else ""
        lines.append(f"  rejected from {reject['source']}: {reject['reason']} ({reject['detail']}){header}")
    return "\n".join(lines)


def emulator_evidence(testbed: Testbed, limit: int = 20) -> dict[str, Any]:
    """The emulator's drops and last rejected returns, as report properties."""
    rejects = testbed.control.get("/rejects")[-limit:]
    return {
        "drops": testbed.control.get("/metrics")["drops"],
        "rejects": [{key: r[key] for key in ("reason", "source", "detail", "header")} for r in rejects],
    }


def expect_returned_both_ways(testbed: Testbed, flow: dict[str, Any], what: str) -> None:
    if min(flow["returned"]) == 0:
        evidence = emulator_evidence(testbed)
        observed = next((r["header"] for r in reversed(evidence["rejects"]) if r["header"]), None)
        raise CheckFailed(
            f"{what}: expected packets of both directions back from {flow['target']} with cookie "
            f"{flow['cookie']:#010x}; returned per direction (initiator, responder): {flow['returned']}, "
            f"sent: {flow['packets']}\n{emulator_account(testbed)}",
            expected_header=flow["header"],
            **({"observed_header": observed} if observed else {}),
            **evidence,
        )


def wait_for_servers(testbed: Testbed, server: str, timeout_s: float = 5.0) -> None:
    """Wait until the echo servers listen (checked inside the server node, not through the appliance)."""
    node = testbed.node(server)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listening = node.cmd(f"ss -Hlntu 'sport = :{TCP_PORT} or sport = :{UDP_PORT}'")
        if len(listening.strip().splitlines()) >= 2:
            return
        time.sleep(0.05)
    raise HarnessError(f"the echo servers in {server} did not start within {timeout_s:g} s (logs in {testbed.logs})")


class Background:
    """A traffic client running in a node while a check changes the testbed; `result()` waits."""

    def __init__(self, testbed: Testbed, node: str, command: list[str]) -> None:
        """Any command that prints one JSON line when it ends."""
        self._process = testbed.node(node).popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    @classmethod
    def traffic(cls, testbed: Testbed, node: str, args: list[str]) -> Background:
        return cls(testbed, node, [sys.executable, "-m", "harness.traffic", *args])

    def result(self, timeout_s: float = 60.0) -> dict[str, Any]:
        try:
            out, err = self._process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            raise HarnessError(f"background traffic did not finish within {timeout_s:g} s") from None
        lines = out.decode(errors="replace").strip().splitlines()
        if not lines:
            raise HarnessError(f"background traffic printed nothing: {err.decode(errors='replace')[-500:]}")
        return json.loads(lines[-1])

    def stop(self) -> None:
        """End a client whose result the check does not need (it only kept traffic flowing)."""
        stop_process(self._process)


def tcp_stream(testbed: Testbed, client: str, server: str, duration_s: float, source_port: int,
               stall_s: float = 15.0) -> Background:
    """A TCP connection echoing for `duration_s`; it gives up when one echo takes over `stall_s`."""
    return Background.traffic(testbed, client, ["tcp-stream", "--host", testbed.host_address(server), "--port", str(TCP_PORT),
                                                "--duration", str(duration_s), "--source-port", str(source_port),
                                                "--timeout", str(stall_s)])


def wait_for_connection(testbed: Testbed, client: str, source_port: int, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The emulator's flow of a connection from `client`:`source_port`, once it exists."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = flows_of(testbed, PROTO_TCP, testbed.host_address(client), source_port)
        return bool(found)

    return found[0] if wait_for(seen, timeout_s) is not None else None


def target_of_connection(testbed: Testbed, client: str, local_port: int) -> dict[str, Any]:
    flows = flows_of(testbed, PROTO_TCP, testbed.host_address(client), local_port)
    if len(flows) != 1:
        raise HarnessError(f"expected one emulator flow for {client}:{local_port}, found {len(flows)}")
    return flows[0]


def wait_for(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> float | None:
    """Seconds until `condition()` held, or None if it did not within `timeout_s`."""
    start = time.monotonic()
    while time.monotonic() - start <= timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(poll_s)
    return None


def target_view(testbed: Testbed, name: str) -> dict[str, Any]:
    return next(t for t in testbed.control.get("/targets") if t["name"] == name)


def inject_each_target(testbed: Testbed, endpoint: Any, kind: str, count: int = 3, listen_s: float = 0.5) -> list[tuple[Any, dict[str, Any]]]:
    """The same injection into every registered target at once (one injector each), so a check
    costs one listening period whatever the number of targets; (target, result) pairs."""
    injections = [
        (target, Background(testbed, "gwlb", inject_command(testbed, target, endpoint, kind, count=count, listen_s=listen_s)))
        for target in testbed.targets if target.registered
    ]
    return [(target, injection.result(timeout_s=listen_s + 30)) for target, injection in injections]


def inject_command(
    testbed: Testbed, target: Any, endpoint: Any, kind: str, *args: str, count: int = 3, listen_s: float = 0.5
) -> list[str]:
    client = str(endpoint.consumers.address_of(endpoint.consumers.hosts[0]))
    server = str(endpoint.servers.address_of(endpoint.servers.hosts[0]))
    return [sys.executable, "-m", "harness.inject", "--source", str(testbed.topology.gwlb.address), "--target", target.address,
            "--eni", hex(endpoint.eni_id), "--profile", testbed.topology.gwlb.profile.name,
            "--inner", client, server, "--kind", kind, "--count", str(count),
            "--listen", str(listen_s), *args]


class TargetSampler:
    """Samples each target's packet count and health while a check runs, for the report's failover
    timeline (`failover_timeline` property): packets per target per period, and health changes."""

    def __init__(self, testbed: Testbed, period_s: float = 0.2) -> None:
        self._testbed, self._period = testbed, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="target-sampler", daemon=True)
        self._times: list[float] = []
        self._counts: list[dict[str, int]] = []
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> TargetSampler:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        """A sample every period, and a last one when the check ends (so a state it just reached,
        such as the recovery it waited for, is on the timeline)."""
        health: dict[str, str] = {}
        stopping = False
        while not stopping:
            stopping = self._stop.wait(self._period)
            try:
                targets = self._testbed.control.get("/targets")
            except HarnessError:
                continue
            now = round(time.monotonic() - self._start, 2)
            self._times.append(now)
            self._counts.append({t["name"]: t["packets"] for t in targets})
            for t in targets:
                if health.get(t["name"]) != t["health"]:
                    self._events.append({"t": now, "target": t["name"], "state": t["health"]})
                    health[t["name"]] = t["health"]

    def timeline(self) -> dict[str, Any]:
        names = sorted(self._counts[0]) if self._counts else []
        deltas = {
            name: [max(0, now[name] - before[name]) for before, now in zip([self._counts[0], *self._counts], self._counts)]
            for name in names
        }
        return {"t": self._times, "packets": deltas, "events": self._events}
