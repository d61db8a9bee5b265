"""Turns a topology and an appliance descriptor into a running testbed, and removes it again.

```
 consumers ─┐                      ┌─ servers         (one pair of subnets per endpoint)
            └── endpoint (router) ─┘
                   │ tun + policy routing: all routed traffic enters the GWLB
                   ▼
                 gwlb  (emulator process; 10.200.0.1 on one veth per target)
                   │ GENEVE / UDP 6081
                   ▼
                 a1 .. aN  (the appliance under test; in two-arm topologies each also has
                   │          a second interface a<N>-eth1 towards the `egress` router)
                 egress ── servers reached only through the appliances (two-arm mode)
```
Every node is a mininet host (a network namespace) and every link a point-to-point veth between
two hosts, so nothing is created in the root namespace and concurrent runs cannot collide (only
containers have global names, which carry the run ID). Every process the testbed starts, and every
node's shell, is recorded in the run registry (`runs.py`) as it starts, so a later run can remove
what a killed one left. Teardown stops the appliances, then the helper processes by PID, newest
first, then mininet removes the hosts, which removes their links and tun devices; each step goes
on when an earlier one fails, and stopping twice is harmless.

An endpoint declared `joins: late` is not built at `up`: `join_endpoint` builds its router and
hosts the same way while traffic flows and tells the running emulator (`POST /endpoints`), which
opens its tun; mininet adds nodes and links to a built network just as it does before `build()`.

A dual-stack side (`subnet6`) also gives its hosts IPv6 addresses; its endpoint forwards IPv6 and
steers it into the same tun (`ip -6 rule iif ... lookup 100`), so the GWLB carries inner IPv6
over its IPv4 outer header. Target interfaces are configured by the launcher, wherever the
appliance runs (its node, or a container the launcher moves the interfaces into).

Hosts route with MTU 8500, the GWLB's limit (AWS recommends it for instances behind an endpoint:
a GWLB drops larger packets without an ICMP error, so PMTUD cannot help); their interfaces keep
the topology's link MTU so oversize checks can still send larger packets.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import loadgen
from harness.descriptor import Descriptor
from harness.emulator import flowlog
from harness.emulator.config import DaemonConfig, EndpointTun, ProbeSettings
from harness.emulator.control import ControlClient
from harness.emulator.core import MAX_INNER
from harness.emulator.specs import EndpointSpec, Settings, TargetSpec
from harness.errors import HarnessError
from harness.launchers import Interface, Running, TargetContext, launcher_for, stop_process
from harness.runs import CONTROL_SOCKET, RunRecord, check_folder
from harness.timers import TimersMode, deregistration_delay, flow_timeouts, health_timing
from harness.topology import Endpoint, Subnet, Topology, TwoArm

log = logging.getLogger("gwlb.testbed")

STEERING_TABLE = 100
SPARE_TARGETS = 1
TUN_QUEUE = 10000
GWLB_NODE = "gwlb"
EGRESS_NODE = "egress"


@dataclass(frozen=True)
class TargetNode:
    """An appliance target; spare ones run from the start but join the target group only when a
    check registers them (scale-out). Spares are in the first endpoint's zone, whose consumers the
    checks use, so they can receive its flows with cross-zone load balancing off."""

    name: str
    address: str
    zone: str
    index: int
    registered: bool = True


class Testbed:
    """The live topology; use as a context manager so it is always removed."""

    def __init__(
        self, topology: Topology, descriptor: Descriptor, timers: TimersMode, run_dir: Path, strict: bool = False,
        *, run_id: str = "local", record: RunRecord | None = None,
    ) -> None:
        self.topology = topology
        self.run_id = run_id
        self.record = record or RunRecord.detached(run_id)
        self.descriptor = descriptor
        self.timers = timers
        self.strict = strict
        self.run_dir = run_dir
        self.logs = run_dir / "logs"
        self.pcaps = run_dir / "pcaps"
        check_folder(run_dir)
        self.control = ControlClient(str(run_dir / CONTROL_SOCKET))
        registered = topology.target_count
        self.targets = [
            TargetNode(
                f"a{i + 1}",
                str(topology.target_address(i)),
                topology.zones[i // topology.gwlb.targets_per_zone] if i < registered else topology.endpoints[0].zone,
                i,
                registered=i < registered,
            )
            for i in range(registered + SPARE_TARGETS)
        ]
        timing = health_timing(timers, descriptor.health_check)
        check = descriptor.health_check
        self.probe = ProbeSettings(
            check.protocol, check.port, check.path, check.matcher,
            timing.interval_s, timing.timeout_s, timing.healthy_threshold, timing.unhealthy_threshold,
        )
        self.deregistration_delay_s = deregistration_delay(timers, topology)
        self.appliances: dict[str, Running] = {}
        self._contexts: dict[str, TargetContext] = {}
        self._crashed: set[str] = set()
        self._helpers: list[subprocess.Popen[bytes]] = []
        self._net: Any = None
        self.phases: dict[str, float] = {}
        self.joined: list[str] = []

    def __enter__(self) -> Testbed:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def node(self, name: str) -> Any:
        return self._net[name]

    def host_address(self, host: str) -> str:
        return str(self._subnet_of(host).address_of(host))

    def host_address6(self, host: str) -> str:
        """The host's IPv6 address; a ValueError if its side has no `subnet6`."""
        return str(self._subnet_of(host).address6_of(host))

    def _subnet_of(self, host: str) -> Subnet:
        for subnet in self.topology.subnets():
            if host in subnet.hosts:
                return subnet
        raise KeyError(f"no host {host!r} in topology {self.topology.name}")

    def node_pids(self) -> dict[str, int]:
        """A process in each node's network namespace (a container's, for Docker targets)."""
        pids = {host.name: host.pid for host in self._net.hosts} if self._net is not None else {}
        pids.update({name: running.namespace_pid for name, running in self.appliances.items()})
        return pids

    def interact(self) -> None:
        """Mininet's CLI on this testbed, until the user leaves it."""
        from mininet.cli import CLI

        CLI(self._net)

    def spawn(self, node: str, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """Start a helper process in a node; it is stopped with the testbed."""
        with (self.logs / log_name).open("ab") as out:
            process = self.node(node).popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._helpers.append(process)
        self.record.add_process(process.pid, f"{args[0]} in {node}")
        return process

    def run(self, node: str, args: list[str], timeout_s: float = 30.0) -> str:
        """Run a command in a node to completion and return its standard output."""
        process = self.node(node).popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_process(process)
            raise HarnessError(f"`{' '.join(args)}` in {node} did not finish within {timeout_s:g} s") from None
        if process.returncode != 0 and not out:
            raise HarnessError(f"`{' '.join(args)}` in {node} failed ({process.returncode}): {err.decode(errors='replace')[-500:]}")
        return out.decode(errors="replace")

    def start(self) -> None:
        """Build and start everything; `phases` keeps each step's seconds (benchmarks/topology_updown.py)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pcaps.mkdir(parents=True, exist_ok=True)
        log.info("building topology %s", self.topology.name)
        with self._phase("network"):
            self._build_network()
        with self._phase("emulator"):
            self._start_emulator()
        log.info("starting %d appliance target(s) (%s)", len(self.targets), self.descriptor.launch.kind.value)
        with self._phase("appliances"):
            self._start_appliances()
        log.info("waiting for the targets to become healthy (at most %g s)", self.healthy_timeout_s)
        with self._phase("healthy"):
            self.wait_healthy(self.healthy_timeout_s)

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = time.monotonic() - started

    def stop(self) -> None:
        """Remove everything; appliances stop side by side, since each may take its grace period."""
        def stop_appliance(name: str, running: Running) -> None:
            try:
                running.stop()
            except Exception as error:  # noqa: BLE001  (teardown must go on)
                log.warning("stopping appliance %s: %s", name, error)

        if self.appliances:
            with concurrent.futures.ThreadPoolExecutor(len(self.appliances), thread_name_prefix="stop") as pool:
                list(pool.map(stop_appliance, *zip(*self.appliances.items())))
        self.appliances.clear()
        for process in reversed(self._helpers):
            try:
                stop_process(process)
            except Exception as error:  # noqa: BLE001
                log.warning("stopping %s: %s", process.args, error)
        self._helpers.clear()
        if self._net is not None:
            net, self._net = self._net, None
            try:
                net.stop()
            except Exception as error:  # noqa: BLE001
                log.warning("removing the mininet hosts: %s", error)

    @property
    def healthy_timeout_s(self) -> float:
        """The appliance's `ready.timeout_s` plus what the health check itself needs to call a target
        healthy (threshold × interval + timeout: 55 s with AWS's defaults under faithful timers)."""
        probe = self.probe
        return self.descriptor.launch.ready_timeout_s + probe.healthy_threshold * probe.interval_s + probe.timeout_s

    def wait_healthy(self, timeout_s: float) -> None:
        """Wait until the emulator's health checks see every target healthy."""
        deadline = time.monotonic() + timeout_s
        while True:
            targets = self.control.get("/targets")
            if all(t["health"] == "healthy" for t in targets):
                return
            dead = [name for name, running in self.appliances.items() if not running.alive()]
            if dead or time.monotonic() > deadline:
                problems = []
                for t in targets:
                    if t["health"] != "healthy":
                        running = self.appliances[t["name"]]
                        problems.append(
                            f"{t['name']} ({t['address']}): {t['health']}, last probe: {t['last_probe'] or 'none'}, "
                            f"process {running.describe_exit()}"
                        )
                what = "stopped before it became healthy" if dead else f"never became healthy within {timeout_s:g} s"
                raise HarnessError(f"appliance {what}: " + "; ".join(problems) + f" (logs in {self.logs})")
            time.sleep(0.1)

    def _build_network(self) -> None:
        from mininet.log import setLogLevel
        from mininet.net import Mininet

        setLogLevel("error")
        net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, waitConnected=False)
        self._net = net
        two_arm = self.topology.two_arm
        steered: dict[str, list[str]] = {}
        for endpoint in self.topology.endpoints:
            self._add_host(endpoint.name)
            steered[endpoint.name] = [self._add_leaf(host, endpoint.name) for _, host in _hosts(endpoint)]
        self._add_host(GWLB_NODE)
        for target in self.targets:
            self._add_host(target.name)
            net.addLink(GWLB_NODE, target.name)
        egress: list[str] = []
        if two_arm is not None:
            self._add_host(EGRESS_NODE)
            egress = [net.addLink(target.name, EGRESS_NODE).intf2.name for target in self.targets]
            egress += [self._add_leaf(host, EGRESS_NODE) for host in two_arm.servers.hosts]
        net.build()

        for endpoint in self.topology.endpoints:
            self._configure_router(endpoint, steered[endpoint.name])
        gwlb_ip = str(self.topology.gwlb.address)
        commands = ["ip link set dev lo up"]
        for target in self.targets:
            intf = f"{GWLB_NODE}-eth{target.index}"
            commands += [
                f"ip link set dev {intf} mtu {self.descriptor.mtu} up",
                f"ip addr add {gwlb_ip}/32 dev {intf}",
                f"ip route add {target.address}/32 dev {intf} src {gwlb_ip}",
            ]
        _run(net[GWLB_NODE], commands)
        if two_arm is not None:
            self._configure_egress(two_arm, egress)

    def _add_host(self, name: str) -> None:
        host = self._net.addHost(name, ip=None)
        self.record.add_process(host.pid, f"shell of node {name}")

    def _add_leaf(self, host: str, router: str) -> str:
        """A host with a veth to `router`; the name of the router's end."""
        self._add_host(host)
        return self._net.addLink(host, router).intf2.name

    def _configure_router(self, endpoint: Endpoint, intfs: list[str]) -> None:
        """The endpoint: every host its own /32 (and /128) link; all they send goes to table 100.
        Its tun has no IPv6 link-local address and no multicast, so the router's own kernel sends
        nothing into the GWLB (its router solicitations and MLD reports would reach the appliances
        as flows of every endpoint)."""
        mtu = self.topology.link_mtu
        tun = f"{endpoint.name}-tun"
        commands = [
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
            f"ip tuntap add dev {tun} mode tun",
            f"ip link set dev {tun} addrgenmode none multicast off",
            f"ip link set dev {tun} mtu {mtu} txqueuelen {TUN_QUEUE} up",
            f"ip route add default dev {tun} table {STEERING_TABLE}",
        ]
        if any(side.cidr6 is not None for side in (endpoint.consumers, endpoint.servers)):
            commands += [
                "sysctl -qw net.ipv6.conf.all.forwarding=1",
                f"ip -6 route add default dev {tun} table {STEERING_TABLE}",
            ]
        hosts = _hosts(endpoint)
        for (subnet, host), intf in zip(hosts, intfs):
            commands += [
                f"ip link set dev {intf} mtu {mtu} up",
                f"ip rule add iif {intf} lookup {STEERING_TABLE} pref 100",
                *_point_to_point(subnet, host, intf),
            ]
            if subnet.cidr6 is not None:
                commands.append(f"ip -6 rule add iif {intf} lookup {STEERING_TABLE} pref 100")
            self._configure_host(subnet, host)
        _run(self._net[endpoint.name], commands)

    def _configure_egress(self, two_arm: TwoArm, intfs: list[str]) -> None:
        """The two-arm egress router: a /32 link to each target's second arm and to each server."""
        router = str(two_arm.router_address)
        commands = ["sysctl -qw net.ipv4.ip_forward=1"]
        for target, intf in zip(self.targets, intfs):
            commands += [
                f"ip link set dev {intf} mtu {self.topology.link_mtu} up",
                f"ip addr add {router}/32 dev {intf}",
                f"ip route add {two_arm.target_address(target.index)}/32 dev {intf} src {router}",
            ]
        servers = two_arm.servers
        for host, intf in zip(servers.hosts, intfs[len(self.targets) :]):
            commands += [
                f"ip link set dev {intf} mtu {self.topology.link_mtu} up", *_point_to_point(servers, host, intf),
            ]
            self._configure_host(servers, host)
        _run(self._net[EGRESS_NODE], commands)

    def _configure_host(self, subnet: Subnet, host: str) -> None:
        mtu = self.topology.link_mtu
        route_mtu = min(mtu, MAX_INNER)
        intf = f"{host}-eth0"
        commands = [
            f"ip link set dev {intf} mtu {mtu} up",
            f"ip addr add {subnet.address_of(host)}/{subnet.cidr.prefixlen} dev {intf}",
            f"ip route add default via {subnet.gateway} mtu {route_mtu}",
        ]
        if subnet.cidr6 is not None:
            commands += [
                f"ip -6 addr add {subnet.address6_of(host)}/{subnet.cidr6.prefixlen} dev {intf} nodad",
                f"ip -6 route add default via {subnet.gateway6} dev {intf} mtu {route_mtu}",
            ]
        _run(self._net[host], commands)

    def _endpoint_tun(self, endpoint: Endpoint) -> EndpointTun:
        return EndpointTun(
            EndpointSpec(endpoint.name, endpoint.eni_id, endpoint.attachment_id, endpoint.zone),
            f"/proc/{self.node(endpoint.name).pid}/ns/net",
            f"{endpoint.name}-tun",
        )

    def join_endpoint(self, name: str) -> Endpoint:
        """Create a `joins: late` endpoint while traffic flows, as a consumer creates one against a
        running endpoint service: its router and hosts are built like the others at `up`, then
        the emulator opens its tun and serves it from now on (control API `POST /endpoints`)."""
        endpoint = next((e for e in self.topology.late_endpoints if e.name == name), None)
        if endpoint is None:
            late = ", ".join(e.name for e in self.topology.late_endpoints) or "none"
            raise HarnessError(f"topology {self.topology.name} has no late-joining endpoint {name!r} (late ones: {late})")
        if name in self.joined:
            raise HarnessError(f"endpoint {name} has joined already")
        self._add_host(endpoint.name)
        hosts = [host for _, host in _hosts(endpoint)]
        intfs = [self._add_leaf(host, endpoint.name) for host in hosts]
        for node in (endpoint.name, *hosts):
            self._net[node].configDefault()
        self._configure_router(endpoint, intfs)
        answer = self.control.post("/endpoints", self._endpoint_tun(endpoint).to_json())
        self.joined.append(name)
        log.info("endpoint %s joined the running GWLB as index %s", name, answer["index"])
        return endpoint

    def _start_emulator(self) -> None:
        gwlb = self.node(GWLB_NODE)
        config = DaemonConfig(
            address=str(self.topology.gwlb.address),
            endpoints=tuple(self._endpoint_tun(e) for e in self.topology.endpoints),
            targets=tuple(TargetSpec(t.name, t.address, t.zone) for t in self.targets),
            settings=Settings(
                stickiness=self.topology.gwlb.stickiness,
                timeouts=flow_timeouts(self.timers, self.topology),
                cross_zone=self.topology.gwlb.cross_zone,
                strict=self.strict,
                rebalance=self.topology.gwlb.rebalance,
                deregistration_delay_s=self.deregistration_delay_s,
                profile=self.topology.gwlb.profile.name,
            ),
            registered=tuple(t.index for t in self.targets if t.registered),
            probe=self.probe,
            control_socket=self.control.path,
            flow_log=str(self.run_dir / flowlog.FILE_NAME),
        )
        Path(self.control.path).unlink(missing_ok=True)
        config_path = self.run_dir / "emulator.json"
        config.write(config_path)
        tcpdump = gwlb.popen(
            ["tcpdump", "-i", "any", "-s", "256", "--immediate-mode", "-U", "-w", str(self.pcaps / "gwlb.pcap"), loadgen.capture_filter()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._helpers.append(tcpdump)
        self.record.add_process(tcpdump.pid, "tcpdump in gwlb")
        with (self.logs / "emulator.log").open("ab") as out:
            emulator = gwlb.popen([sys.executable, "-m", "harness.emulator", str(config_path)],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._helpers.append(emulator)
        self.record.add_process(emulator.pid, "GWLB emulator")
        deadline = time.monotonic() + 10
        while not Path(self.control.path).exists():
            if emulator.poll() is not None or time.monotonic() > deadline:
                tail = (self.logs / "emulator.log").read_text(errors="replace")[-2000:]
                raise HarnessError(f"the GWLB emulator did not start: {tail}")
            time.sleep(0.05)

    def _start_appliances(self) -> None:
        launch = launcher_for(self.descriptor.launch.kind)
        gwlb_ip = str(self.topology.gwlb.address)
        two_arm = self.topology.two_arm
        for target in self.targets:
            interfaces = [Interface(
                f"{target.name}-eth0", target.address, self.topology.gwlb.target_subnet.prefixlen,
                self.descriptor.mtu, gateway=gwlb_ip,
            )]
            if two_arm is not None:
                interfaces.append(Interface(
                    f"{target.name}-eth1", str(two_arm.target_address(target.index)), two_arm.subnet.prefixlen,
                    self.topology.link_mtu,
                ))
            context = TargetContext(
                name=target.name,
                index=target.index,
                appliance_ip=target.address,
                gwlb_ip=gwlb_ip,
                appliance_dir=str(self.descriptor.directory),
                log_path=self.logs / f"{target.name}.log",
                run_id=self.run_id,
                interfaces=tuple(interfaces),
                sysctls=self.descriptor.sysctls,
                record=self.record,
                egress_gw=str(two_arm.router_address) if two_arm is not None else "",
            )
            self._contexts[target.name] = context
            self.appliances[target.name] = launch(self.descriptor, self.node(target.name), context)

    def kill_appliance(self, name: str) -> None:
        """Make a target's appliance die abruptly (SIGKILL of its process, a frozen container)."""
        self.appliances[name].crash()
        self._crashed.add(name)

    def start_appliance(self, name: str) -> None:
        """Bring a killed appliance back: in place if it can resume, else started anew in its
        already configured node."""
        running = self.appliances[name]
        if not running.revive():
            running.stop()
            context = replace(self._contexts[name], interfaces=(), sysctls=())
            self.appliances[name] = launcher_for(self.descriptor.launch.kind)(self.descriptor, self.node(name), context)
        self._crashed.discard(name)

    def restore_targets(self) -> None:
        """Undo what a check did to the target group: appliances back, registrations as built."""
        for name in sorted(self._crashed):
            self.start_appliance(name)
        states = {t["name"]: t["state"] for t in self.control.get("/targets")}
        for target in self.targets:
            if target.registered and states[target.name] in ("unused", "draining"):
                self.control.post(f"/targets/{target.name}/register")
            elif not target.registered and states[target.name] not in ("unused", "draining"):
                self.control.post(f"/targets/{target.name}/deregister")
        self.wait_healthy(self.healthy_timeout_s)


def _hosts(endpoint: Endpoint) -> list[tuple[Subnet, str]]:
    """The endpoint's hosts in link order: consumers, then servers."""
    return [(side, host) for side in (endpoint.consumers, endpoint.servers) for host in side.hosts]


def _point_to_point(subnet: Subnet, host: str, intf: str) -> list[str]:
    """Router side of a host's link: the gateway address as /32 (and /128), a route to the host."""
    commands = [f"ip addr add {subnet.gateway}/32 dev {intf}", f"ip route add {subnet.address_of(host)}/32 dev {intf}"]
    if subnet.cidr6 is not None:
        commands += [
            f"ip -6 addr add {subnet.gateway6}/128 dev {intf} nodad",
            f"ip -6 route add {subnet.address6_of(host)}/128 dev {intf}",
        ]
    return commands


def _run(node: Any, commands: list[str]) -> None:
    for command in commands:
        output = node.cmd(command).strip()
        if output:
            raise HarnessError(f"configuring {node.name}: `{command}` said: {output}")
