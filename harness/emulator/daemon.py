"""The emulator as a process in the GWLB's namespace: sockets, tun devices and the event loop.

Inner packets arrive on each endpoint's tun; GENEVE goes to targets through a raw IPv4 socket
(so the outer UDP source port can be the flow's); returns are read on a raw UDP socket, which sees
every destination port and so can count replies sent to the wrong one. A bound UDP socket on 6081
with a drop-all filter keeps the kernel from answering valid returns with port unreachables.

Two data paths share those sockets (`GWLB_DATAPATH`, see harness/emulator/fastpath.py): the Python
loop below, and the compiled one, whose event loop runs in a thread of its own without the GIL and
hands every packet it cannot answer to the same per-packet Python functions (`_forward`,
`_return`); the main thread then only runs the periodic `tick`.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import geneve
from harness.emulator.config import DaemonConfig, EndpointTun
from harness.emulator.control import ControlServer, Refused
from harness.emulator.core import Delivery, Encapsulated, EndpointConflict
from harness.emulator.fastpath import CachedGwlb, choose_datapath, gwlb_for
from harness.emulator.flowlog import FlowLog
from harness.emulator.health import HealthChecker
from harness.emulator.metrics import prometheus
from harness.inet import PacketError, build_ipv4_udp, parse_ipv4_udp
from harness.tun import open_tun

log = logging.getLogger("gwlb.emulator")

SO_ATTACH_FILTER = 26
_BATCH = 256
_FAST_BATCH = 64
TICK_S = 0.2
_RCVBUF = 8 * 1024 * 1024


def _drop_all(sock: socket.socket) -> None:
    program = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
    fprog = struct.pack("HL", 1, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _ip(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.datapath = choose_datapath()
        self.gwlb = gwlb_for(self.datapath)(
            [e.spec for e in config.endpoints], list(config.targets), config.settings, registered=config.registered
        )
        self.address = ipaddress.IPv4Address(config.address).packed
        self.tuns = [open_tun(e.tun, e.netns) for e in config.endpoints]
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self.rx.setblocking(False)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _RCVBUF)
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _drop_all(self.sink)
        self.sink.bind((config.address, geneve.GENEVE_PORT))
        self.health = HealthChecker([t.address for t in config.targets], config.probe, self.gwlb.set_health)
        self._joining = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self.control = ControlServer(config.control_socket, self._routes(), self._actions(),
                                     {"/endpoints": self._add_endpoint})
        self._stop = threading.Event()
        self._target_addresses = [(t.address, 0) for t in config.targets]
        self.flow_log = FlowLog(Path(config.flow_log), self.gwlb.endpoints) if config.flow_log else None
        if self.flow_log is not None:
            self.gwlb.flows.listeners.append(self.flow_log)

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def run(self) -> None:
        self.health.start()
        control = threading.Thread(target=self.control.serve_forever, name="control", daemon=True)
        control.start()
        log.info("emulator ready: %d endpoints, %d targets, %s data path", len(self.tuns), len(self.config.targets),
                 self.datapath.value)
        try:
            if isinstance(self.gwlb, CachedGwlb):
                self._run_fast(self.gwlb)
            else:
                self._run_python()
        finally:
            self.health.stop()
            self.control.shutdown()
            if self.flow_log is not None:
                with self.gwlb.lock:
                    self.flow_log.close(self.gwlb.flows.flows())
            for fd in self.tuns:
                os.close(fd)

    def _run_python(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.rx, selectors.EVENT_READ, self._read_returns)
        with self._joining:
            self._selector = selector
            for index, fd in enumerate(self.tuns):
                self._watch(index, fd)
        next_sweep = time.monotonic() + 1
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.5):
                key.data()
            if time.monotonic() >= next_sweep:
                self.gwlb.tick()
                next_sweep = time.monotonic() + TICK_S

    def _run_fast(self, gwlb: CachedGwlb) -> None:
        """The compiled loop in a thread of its own; this thread ticks and reports I/O errors."""
        failures: list[BaseException] = []

        def serve() -> None:
            try:
                gwlb.cache.serve(self.tuns, self.rx.fileno(), self.tx.fileno(), self.address, self._forward,
                                 self._return, batch=_FAST_BATCH)
            except BaseException as error:  # noqa: BLE001  (re-raised in the main thread)
                failures.append(error)
            finally:
                self._stop.set()

        thread = threading.Thread(target=serve, name="datapath")
        thread.start()
        reported = {"send_errors": 0, "write_errors": 0}
        try:
            while not self._stop.wait(TICK_S):
                self.gwlb.tick()
                stats = gwlb.cache.stats()
                for name, before in reported.items():
                    if stats[name] > before:
                        log.warning("fast path: %d %s since the last report", stats[name] - before, name.replace("_", " "))
                        reported[name] = stats[name]
        finally:
            gwlb.cache.stop()
            thread.join()
            log.info("fast path: %s", gwlb.cache.stats())
        if failures:
            raise failures[0]

    def _watch(self, endpoint: int, fd: int) -> None:
        """Read an endpoint's tun in the running loop (Python's selector, or the compiled loop's epoll)."""
        if isinstance(self.gwlb, CachedGwlb):
            self.gwlb.serve_endpoint(endpoint, fd)
        elif self._selector is not None:
            self._selector.register(fd, selectors.EVENT_READ, lambda: self._read_tun(endpoint, fd))

    def _add_endpoint(self, body: Any) -> dict[str, Any]:
        """POST /endpoints: an endpoint created while traffic flows. Its tun is opened in its own
        namespace and read from now on; the other endpoints' flows and cookies are untouched."""
        try:
            endpoint = EndpointTun.from_json(body)
        except ValueError as error:
            raise Refused(400, str(error)) from None
        spec = endpoint.spec
        with self._joining:
            try:
                with self.gwlb.lock:
                    self.gwlb.check_endpoint(spec)
            except EndpointConflict as error:
                raise Refused(409, str(error)) from None
            try:
                fd = open_tun(endpoint.tun, endpoint.netns)
            except OSError as error:
                raise Refused(400, f"cannot open tun {endpoint.tun!r} in {endpoint.netns}: {error}") from None
            index = self.gwlb.add_endpoint(spec)
            self.tuns.append(fd)
            self._watch(index, fd)
        log.info("endpoint %s joined: ENI %s, attachment %#018x, zone %s, tun %s", spec.name,
                 geneve.format_eni(spec.eni_id), spec.attachment_id, spec.zone, endpoint.tun)
        return {"index": index, "name": spec.name, "eni_id": geneve.format_eni(spec.eni_id),
                "attachment_id": f"{spec.attachment_id:#018x}", "zone": spec.zone, "tun": endpoint.tun}

    def _read_tun(self, endpoint: int, fd: int) -> None:
        for _ in range(_BATCH):
            try:
                inner = os.read(fd, 65536)
            except BlockingIOError:
                return
            self._forward(endpoint, inner)

    def _forward(self, endpoint: int, inner: bytes) -> None:
        result = self.gwlb.from_endpoint(endpoint, inner)
        if isinstance(result, Encapsulated):
            target = self.config.targets[result.target]
            packet = build_ipv4_udp(self.address, target.packed, result.source_port, geneve.GENEVE_PORT, result.payload)
            try:
                self.tx.sendto(packet, self._target_addresses[result.target])
            except OSError as error:
                log.warning("send to %s failed: %s", target.name, error)

    def _read_returns(self) -> None:
        for _ in range(_BATCH):
            try:
                packet = self.rx.recv(65536)
            except BlockingIOError:
                return
            self._return(packet)

    def _return(self, packet: bytes) -> None:
        try:
            datagram = parse_ipv4_udp(packet)
        except PacketError:
            return
        if datagram.dst != self.address:
            return
        result = self.gwlb.from_target(datagram.src, datagram.sport, datagram.dport, datagram.payload)
        if isinstance(result, Delivery):
            try:
                os.write(self.tuns[result.endpoint], result.inner)
            except OSError as error:
                log.warning("delivery to endpoint %d failed: %s", result.endpoint, error)

    def _routes(self) -> dict[str, Any]:
        return {
            "/flows": self._flows,
            "/metrics": self._metrics,
            "/metrics/prometheus": self._prometheus,
            "/targets": self._targets,
            "/rejects": self._rejects,
            "/mismatches": self._mismatches,
            "/mixups": self._mixups,
        }

    def _actions(self) -> dict[str, Any]:
        actions: dict[str, Any] = {
            "/attributes/target_failover/rebalance": lambda: self._set_failover(True),
            "/attributes/target_failover/no_rebalance": lambda: self._set_failover(False),
        }
        for index, target in enumerate(self.config.targets):
            actions[f"/targets/{target.name}/register"] = lambda i=index: self._act(self.gwlb.register, i)
            actions[f"/targets/{target.name}/deregister"] = lambda i=index: self._act(self.gwlb.deregister, i)
        return actions

    def _set_failover(self, rebalance: bool) -> dict[str, Any]:
        self.gwlb.set_failover(rebalance)
        return {"target_failover": "rebalance" if rebalance else "no_rebalance"}

    def _act(self, action: Any, index: int) -> dict[str, Any]:
        action(index)
        return self._targets()[index]

    def _flows(self) -> list[dict[str, Any]]:
        with self.gwlb.lock:
            flows = self.gwlb.flows.flows()
            return [
                {
                    "endpoint": self.gwlb.endpoints[f.key.endpoint].name,
                    "target": self.gwlb.targets[f.target].name,
                    "cookie": f.cookie,
                    "source_port": f.source_port,
                    "protocol": f.key.protocol,
                    "ends": [[_ip(f.key.low[0]), f.key.low[1]], [_ip(f.key.high[0]), f.key.high[1]]],
                    "initiator": _ip(f.initiator),
                    "header": f.header.hex(),
                    "reply_header": f.reply_header.hex(),
                    "packets": list(f.packets),
                    "returned": list(f.returned),
                    "closed": f.closed,
                }
                for f in flows
            ]

    def _metrics(self) -> dict[str, Any]:
        with self.gwlb.lock:
            m = self.gwlb.metrics
            healthy = len(self.gwlb.healthy)
            registered = sum(1 for i in range(len(self.config.targets)) if self.gwlb.pool.registration(i) != "unused")
            return {
                "ActiveFlowCount": len(self.gwlb.flows),
                **m.total.aws(),
                "HealthyHostCount": healthy,
                "UnHealthyHostCount": registered - healthy,
                "zones": {zone: traffic.aws() for zone, traffic in m.zones.items()},
                "source_port_changed": m.source_port_changed,
                "mixups": m.mixups,
                "rebalanced_flows": m.rebalanced_flows,
                "drops": {reason.value: count for reason, count in m.drops.items()},
            }

    def _prometheus(self) -> str:
        snapshot = self._metrics()
        load_balancer = {k: v for k, v in snapshot.items() if isinstance(v, int)}
        return prometheus(load_balancer, snapshot["zones"], snapshot["drops"])

    def _targets(self) -> list[dict[str, Any]]:
        """describe-target-health: registration first (unused, draining), then health."""
        with self.gwlb.lock:
            registration = [self.gwlb.pool.registration(i) for i in range(len(self.config.targets))]
            packets = list(self.gwlb.target_packets)
        views = []
        for index, (target, health) in enumerate(zip(self.config.targets, self.health.snapshot())):
            state, reason = health.state.value, health.reason.value if health.reason else None
            if registration[index] == "unused":
                state, reason = "unused", "Target.NotRegistered"
            elif registration[index] == "draining":
                state, reason = "draining", "Target.DeregistrationInProgress"
            views.append({
                "name": target.name,
                "address": target.address,
                "zone": target.zone,
                "state": state,
                "reason": reason,
                "health": health.state.value,
                "last_probe": health.last_probe,
                "failed_probes": health.failed_probes,
                "probes": health.probes,
                "transitions": health.transitions,
                "packets": packets[index],
            })
        return views

    def _rejects(self) -> list[dict[str, Any]]:
        with self.gwlb.lock:
            return [
                {"at": r.at, "reason": r.reason.value, "source": r.source, "detail": r.detail, "header": r.header}
                for r in self.gwlb.rejects
            ]

    def _mismatches(self) -> dict[str, Any]:
        with self.gwlb.lock:
            return {
                str(cookie): {"expected": m.expected, "observed": m.observed, "count": m.count}
                for cookie, m in self.gwlb.mismatches.items()
            }


    def _mixups(self) -> list[dict[str, Any]]:
        with self.gwlb.lock:
            return [{"cookie": m.cookie, "expected": m.expected, "observed": m.observed} for m in self.gwlb.mixup_samples]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.emulator", description="Run the GWLB emulator.")
    parser.add_argument("config", type=Path, help="JSON written by the testbed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    daemon = Daemon(DaemonConfig.read(args.config))
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    daemon.run()
    return 0
