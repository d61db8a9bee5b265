"""Turns a topology and an appliance descriptor into a running testbed, and removes it again.

```
 consumers ─┐                      ┌─ servers         (one pair of subnets per endpoint)
            └── endpoint (router) ─┘
                   │ tun + policy routing: all routed traffic enters the GWLB
                   ▼
                 gwlb  (emulator process; 10.200.0.1 on one veth per target)
                   │ GENEVE / UDP 6081
                   ▼
                 a1 .. aN  (the appliance under test)
```
Every node is a mininet host (a network namespace) and every link a point-to-point veth between
two hosts, so nothing is created in the root namespace and concurrent runs cannot collide. The
processes the testbed starts are stopped by PID, newest first, then mininet removes the hosts,
which removes their links and tun devices.

Hosts route with MTU 8500, the GWLB's limit (AWS recommends it for instances behind an endpoint:
a GWLB drops larger packets without an ICMP error, so PMTUD cannot help); their interfaces keep
the topology's link MTU so oversize checks can still send larger packets.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.descriptor import Descriptor
from harness.emulator.config import DaemonConfig, EndpointTun, ProbeSettings
from harness.emulator.control import ControlClient
from harness.emulator.core import MAX_INNER, EndpointSpec, Settings, TargetSpec
from harness.errors import HarnessError
from harness.launchers import Running, TargetContext, launcher_for, stop_process
from harness.timers import TimersMode, flow_timeouts, health_timing
from harness.topology import Topology

log = logging.getLogger("gwlb.testbed")

STEERING_TABLE = 100
TUN_QUEUE = 10000
GWLB_NODE = "gwlb"


@dataclass(frozen=True)
class TargetNode:
    name: str
    address: str
    zone: str
    index: int


class Testbed:
    """The live topology; use as a context manager so it is always removed."""

    def __init__(self, topology: Topology, descriptor: Descriptor, timers: TimersMode, run_dir: Path, strict: bool = False) -> None:
        self.topology = topology
        self.descriptor = descriptor
        self.timers = timers
        self.strict = strict
        self.run_dir = run_dir
        self.logs = run_dir / "logs"
        self.pcaps = run_dir / "pcaps"
        self.control = ControlClient(str(run_dir / "emulator.sock"))
        self.targets = [
            TargetNode(f"a{i + 1}", str(topology.target_address(i)), topology.zones[i // topology.gwlb.targets_per_zone], i)
            for i in range(topology.target_count)
        ]
        self.appliances: dict[str, Running] = {}
        self._helpers: list[subprocess.Popen[bytes]] = []
        self._net: Any = None

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
        for endpoint in self.topology.endpoints:
            for subnet in (endpoint.consumers, endpoint.servers):
                if host in subnet.hosts:
                    return str(subnet.address_of(host))
        raise KeyError(f"no host {host!r} in topology {self.topology.name}")

    def spawn(self, node: str, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """Start a helper process in a node; it is stopped with the testbed."""
        with (self.logs / log_name).open("ab") as out:
            process = self.node(node).popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._helpers.append(process)
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
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pcaps.mkdir(parents=True, exist_ok=True)
        self._build_network()
        self._start_emulator()
        self._start_appliances()
        self.wait_healthy(self.descriptor.launch.ready_timeout_s)

    def stop(self) -> None:
        for name, running in reversed(list(self.appliances.items())):
            try:
                running.stop()
            except Exception as error:  # noqa: BLE001  (teardown must go on)
                log.warning("stopping appliance %s: %s", name, error)
        self.appliances.clear()
        for process in reversed(self._helpers):
            stop_process(process)
        self._helpers.clear()
        if self._net is not None:
            self._net.stop()
            self._net = None

    def wait_healthy(self, timeout_s: float) -> None:
        """Wait until the emulator's health checks see every target healthy."""
        deadline = time.monotonic() + timeout_s
        while True:
            targets = self.control.get("/targets")
            if all(t["state"] == "healthy" for t in targets):
                return
            dead = [name for name, running in self.appliances.items() if not running.alive()]
            if dead or time.monotonic() > deadline:
                problems = []
                for t in targets:
                    if t["state"] != "healthy":
                        running = self.appliances[t["name"]]
                        problems.append(
                            f"{t['name']} ({t['address']}): {t['state']}, last probe: {t['last_probe'] or 'none'}, "
                            f"process {running.describe_exit()}"
                        )
                raise HarnessError(
                    f"appliance never became healthy within {timeout_s:g} s: " + "; ".join(problems)
                    + f" (logs in {self.logs})"
                )
            time.sleep(0.1)

    def _build_network(self) -> None:
        from mininet.log import setLogLevel
        from mininet.net import Mininet

        setLogLevel("error")
        net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, waitConnected=False)
        self._net = net
        mtu = self.topology.link_mtu
        route_mtu = min(mtu, MAX_INNER)
        steered: dict[str, list[str]] = {}
        for endpoint in self.topology.endpoints:
            net.addHost(endpoint.name, ip=None)
            steered[endpoint.name] = []
            for subnet in (endpoint.consumers, endpoint.servers):
                for host in subnet.hosts:
                    net.addHost(host, ip=None)
                    link = net.addLink(host, endpoint.name)
                    steered[endpoint.name].append(link.intf2.name)
        net.addHost(GWLB_NODE, ip=None)
        for target in self.targets:
            net.addHost(target.name, ip=None)
            net.addLink(GWLB_NODE, target.name)
        net.build()

        gwlb_ip = str(self.topology.gwlb.address)
        for endpoint in self.topology.endpoints:
            router = net[endpoint.name]
            commands = [
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
                f"ip tuntap add dev {endpoint.name}-tun mode tun",
                f"ip link set dev {endpoint.name}-tun mtu {mtu} txqueuelen {TUN_QUEUE} up",
                f"ip route add default dev {endpoint.name}-tun table {STEERING_TABLE}",
            ]
            for subnet, intfs in (
                (endpoint.consumers, steered[endpoint.name][: len(endpoint.consumers.hosts)]),
                (endpoint.servers, steered[endpoint.name][len(endpoint.consumers.hosts) :]),
            ):
                for host, intf in zip(subnet.hosts, intfs):
                    address = subnet.address_of(host)
                    commands += [
                        f"ip link set dev {intf} mtu {mtu} up",
                        f"ip addr add {subnet.gateway}/32 dev {intf}",
                        f"ip route add {address}/32 dev {intf}",
                        f"ip rule add iif {intf} lookup {STEERING_TABLE} pref 100",
                    ]
                    _run(net[host], [
                        f"ip link set dev {host}-eth0 mtu {mtu} up",
                        f"ip addr add {address}/{subnet.cidr.prefixlen} dev {host}-eth0",
                        f"ip route add default via {subnet.gateway} mtu {route_mtu}",
                    ])
            _run(router, commands)

        gwlb = net[GWLB_NODE]
        commands = ["ip link set dev lo up"]
        for target in self.targets:
            intf = f"{GWLB_NODE}-eth{target.index}"
            commands += [
                f"ip link set dev {intf} mtu {self.descriptor.mtu} up",
                f"ip addr add {gwlb_ip}/32 dev {intf}",
                f"ip route add {target.address}/32 dev {intf} src {gwlb_ip}",
            ]
            prefix = self.topology.gwlb.target_subnet.prefixlen
            _run(net[target.name], [
                f"ip link set dev {target.name}-eth0 mtu {self.descriptor.mtu} up",
                f"ip addr add {target.address}/{prefix} dev {target.name}-eth0",
                f"ip route add default via {gwlb_ip}",
                *(f"sysctl -qw {key}={value}" for key, value in self.descriptor.sysctls),
            ])
        _run(gwlb, commands)

    def _start_emulator(self) -> None:
        gwlb = self.node(GWLB_NODE)
        timing = health_timing(self.timers, self.descriptor.health_check)
        check = self.descriptor.health_check
        config = DaemonConfig(
            address=str(self.topology.gwlb.address),
            endpoints=tuple(
                EndpointTun(
                    EndpointSpec(e.name, e.eni_id, e.attachment_id, e.zone),
                    f"/proc/{self.node(e.name).pid}/ns/net",
                    f"{e.name}-tun",
                )
                for e in self.topology.endpoints
            ),
            targets=tuple(TargetSpec(t.name, t.address, t.zone) for t in self.targets),
            settings=Settings(
                stickiness=self.topology.gwlb.stickiness,
                timeouts=flow_timeouts(self.timers, self.topology),
                cross_zone=self.topology.gwlb.cross_zone,
                strict=self.strict,
            ),
            probe=ProbeSettings(
                check.protocol, check.port, check.path, check.matcher,
                timing.interval_s, timing.timeout_s, timing.healthy_threshold, timing.unhealthy_threshold,
            ),
            control_socket=self.control.path,
        )
        Path(self.control.path).unlink(missing_ok=True)
        config_path = self.run_dir / "emulator.json"
        config.write(config_path)
        self._helpers.append(gwlb.popen(
            ["tcpdump", "-i", "any", "-s", "256", "-U", "-w", str(self.pcaps / "gwlb.pcap"), "udp port 6081 or icmp"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        with (self.logs / "emulator.log").open("ab") as out:
            emulator = gwlb.popen([sys.executable, "-m", "harness.emulator", str(config_path)],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._helpers.append(emulator)
        deadline = time.monotonic() + 10
        while not Path(self.control.path).exists():
            if emulator.poll() is not None or time.monotonic() > deadline:
                tail = (self.logs / "emulator.log").read_text(errors="replace")[-2000:]
                raise HarnessError(f"the GWLB emulator did not start: {tail}")
            time.sleep(0.05)

    def _start_appliances(self) -> None:
        launch = launcher_for(self.descriptor.launch.kind)
        for target in self.targets:
            context = TargetContext(
                name=target.name,
                index=target.index,
                appliance_ip=target.address,
                gwlb_ip=str(self.topology.gwlb.address),
                appliance_dir=str(self.descriptor.directory),
                log_path=self.logs / f"{target.name}.log",
            )
            self.appliances[target.name] = launch(self.descriptor, self.node(target.name), context)


def _run(node: Any, commands: list[str]) -> None:
    for command in commands:
        output = node.cmd(command).strip()
        if output:
            raise HarnessError(f"configuring {node.name}: `{command}` said: {output}")
