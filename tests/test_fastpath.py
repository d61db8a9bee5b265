"""harness.emulator.fastpath: the compiled cache decides nothing Python would decide differently.

    inner ─► CachedGwlb.from_endpoint ─► _fastpath.Cache.forward ─hit─► Encapsulated
                                                          └─miss─► Gwlb.from_endpoint (Python)
    GENEVE ─► CachedGwlb.from_target ─► _fastpath.Cache.back ─hit─► Delivery
                                                          └─miss─► Gwlb.from_target (Python)

The proof is differential: the same random traffic (new and reused flows, TCP flags, ICMP errors,
fragments, echoes, altered headers, NAT, cookie mix-ups, stale cookies, health changes, draining,
rebalancing, idle expiry) goes through a pure-Python Gwlb, a CachedGwlb, and a CachedGwlb whose
hits are folded late as in the daemon's loop; every result and the whole observable state (flows,
metrics with peaks, target counters, rejects, mismatches, mix-ups) must be equal. The fuzzer's
million-input engine is replayed on both paths too. The event loop itself (`serve`) is checked on
loopback in a network namespace of its own, with socket pairs standing in for tun devices.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment
from scapy.packet import Raw

from harness import fuzzing, geneve, netns
from harness.emulator import fastpath
from harness.emulator.core import MAX_INNER, Delivery, DropReason, Encapsulated, Gwlb
from harness.emulator.fastpath import CachedGwlb, Datapath
from harness.emulator.specs import EndpointSpec, Settings, TargetSpec
from harness.flows import Timeouts
from harness.inet import PacketError, build_ipv4_udp, parse_inner, parse_ipv4_udp
from harness.topology import Stickiness

pytestmark = pytest.mark.skipif(not fastpath.AVAILABLE, reason=f"the fast path is not built: {fastpath.IMPORT_ERROR}")

ENDPOINTS = [
    EndpointSpec("e-a", eni_id=0x02B8EE1D4DB0C51C4, attachment_id=0x1122334455667788, zone="a"),
    EndpointSpec("e-b", eni_id=0x0AAAABBBBCCCCDDDD, attachment_id=0x8877665544332211, zone="b"),
]
TARGETS = [TargetSpec("t-a1", "10.0.1.10", "a"), TargetSpec("t-a2", "10.0.1.11", "a"), TargetSpec("t-b1", "10.0.2.10", "b")]
TIMEOUTS = Timeouts(tcp_idle_s=60, other_idle_s=20)
VARIANTS = {
    "five-tuple": Settings(Stickiness.FIVE_TUPLE, TIMEOUTS, deregistration_delay_s=8),
    "three-tuple-strict-cross-zone": Settings(Stickiness.THREE_TUPLE, TIMEOUTS, cross_zone=True, strict=True,
                                              deregistration_delay_s=8),
    "two-tuple-strict-rebalance": Settings(Stickiness.TWO_TUPLE, TIMEOUTS, strict=True, rebalance=True,
                                           deregistration_delay_s=8),
    "five-tuple-rebalance-cross-zone": Settings(Stickiness.FIVE_TUPLE, TIMEOUTS, cross_zone=True, rebalance=True,
                                                deregistration_delay_s=8),
    "tencent-rebalance": Settings(Stickiness.THREE_TUPLE, TIMEOUTS, rebalance=True, deregistration_delay_s=8,
                                  profile="tencent"),
}
CLIENTS, SERVERS = ("192.0.2.10", "192.0.2.11"), ("198.51.100.20", "198.51.100.21")
CLIENT6, SERVER6 = "2001:db8::10", "2001:db8:1::20"


def _inner_pool() -> list[bytes]:
    """Inner packets of every kind the flow logic tells apart, both directions, a few hosts."""
    packets: list[Any] = []
    for client in CLIENTS:
        for server in SERVERS:
            for port in (40000, 40001):
                packets += [IP(src=client, dst=server) / UDP(sport=port, dport=53) / Raw(bytes(size))
                            for size in (0, 100)]
                packets.append(IP(src=server, dst=client) / UDP(sport=53, dport=port) / Raw(bytes(20)))
                packets += [IP(src=client, dst=server) / TCP(sport=port, dport=443, flags=f) for f in ("S", "A", "PA", "FA", "R")]
                packets += [IP(src=server, dst=client) / TCP(sport=443, dport=port, flags=f) for f in ("SA", "A", "FA", "RA")]
            packets += [IP(src=client, dst=server) / ICMP(type=8, id=1), IP(src=server, dst=client) / ICMP(type=0, id=1),
                        IP(src=server, dst=client) / ICMP(type=3, code=3) / IP(src=client, dst=server) / UDP(sport=40000, dport=53),
                        IP(src=client, dst=server, proto=47) / Raw(bytes(8))]
    packets += [
        IP(src=CLIENTS[0], dst=CLIENTS[0]) / UDP(sport=40000, dport=53),
        IP(src=CLIENTS[0], dst=CLIENTS[0]) / UDP(sport=53, dport=40000),
        IP(src=CLIENTS[0], dst=SERVERS[0]) / UDP(sport=40000, dport=53) / Raw(bytes(MAX_INNER - 28)),
        IP(src=CLIENTS[0], dst=SERVERS[0]) / UDP(sport=40000, dport=53) / Raw(bytes(MAX_INNER - 27)),
        IP(src=CLIENTS[0], dst=SERVERS[0], flags="MF") / UDP(sport=40000, dport=53) / Raw(bytes(16)),
        IP(src=CLIENTS[0], dst=SERVERS[0], options=b"\x01\x01\x01\x00") / UDP(sport=40002, dport=53),
        IPv6(src=CLIENT6, dst=SERVER6) / UDP(sport=40000, dport=53) / Raw(bytes(10)),
        IPv6(src=SERVER6, dst=CLIENT6) / UDP(sport=53, dport=40000),
        IPv6(src=CLIENT6, dst=SERVER6) / TCP(sport=40000, dport=443, flags="S"),
        IPv6(src=CLIENT6, dst=SERVER6) / TCP(sport=40000, dport=443, flags="A"),
        IPv6(src=SERVER6, dst=CLIENT6) / TCP(sport=443, dport=40000, flags="A"),
        IPv6(src=CLIENT6, dst=SERVER6) / ICMPv6EchoRequest(id=1),
        IPv6(src=CLIENT6, dst=SERVER6) / IPv6ExtHdrFragment(m=1) / UDP(sport=40000, dport=53),
    ]
    return [bytes(p) for p in packets] + [b"", b"\x00" * 30, bytes(IP(src=CLIENTS[0], dst=SERVERS[0]) / TCP(flags="A"))[:24]]


POOL = _inner_pool()


def _steady(inner: bytes) -> bool:
    """Packets of the kind an established flow carries (the cache's hits)."""
    try:
        flow = parse_inner(inner)
    except PacketError:
        return False
    return len(inner) <= MAX_INNER and not flow.fragment and not flow.icmp_error and not flow.tcp_flags & 0x07


STEADY = [inner for inner in POOL if _steady(inner)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class DeferredGwlb(CachedGwlb):
    """A CachedGwlb that handles hits as the daemon's loop does: under the raw mutex, with no
    fold until somebody next takes `gwlb.lock` (a miss, a tick, a reading of state)."""

    def from_endpoint(self, endpoint: int, inner: bytes) -> Encapsulated | DropReason:
        self.cache.acquire()
        try:
            hit = self.cache.forward(endpoint, inner)
        finally:
            self.cache.release()
        return Encapsulated(*hit) if hit is not None else Gwlb.from_endpoint(self, endpoint, inner)

    def from_target(self, source: bytes, source_port: int, dest_port: int, payload: bytes) -> Delivery | DropReason:
        self.cache.acquire()
        try:
            hit = self.cache.back(source, source_port, dest_port, payload)
        finally:
            self.cache.release()
        return Delivery(*hit) if hit is not None else Gwlb.from_target(self, source, source_port, dest_port, payload)


def state(gwlb: Gwlb) -> dict[str, Any]:
    """Everything the control API, the report and the checks can observe."""
    with gwlb.lock:
        metrics = gwlb.metrics
        flows = sorted(gwlb.flows.flows(), key=lambda f: f.cookie)
        if isinstance(gwlb, CachedGwlb):
            assert gwlb.cache.cookies() == {f.cookie for f in flows}, "the cache holds other flows than the table"
        return {
            "total": metrics.total.aws(),
            "zones": {zone: traffic.aws() for zone, traffic in metrics.zones.items()},
            "drops": dict(metrics.drops),
            "counters": (metrics.source_port_changed, metrics.mixups, metrics.rebalanced_flows),
            "target_packets": list(gwlb.target_packets),
            "flows": [(f.cookie, f.key, f.target, f.source_port, f.header, f.initiator, tuple(f.packets), tuple(f.octets),
                       tuple(f.returned), f.created, f.last_seen, f.closed) for f in flows],
            "mismatches": {c: (m.expected, m.observed, m.count) for c, m in gwlb.mismatches.items()},
            "mixups": list(gwlb.mixup_samples),
            "rejects": list(gwlb.rejects),
            "health": gwlb.healthy,
        }


@dataclass
class Twins:
    """The same calls on every Gwlb; results must be equal call by call."""

    gwlbs: list[Gwlb]
    clock: Clock

    def call(self, method: str, *args: Any) -> Any:
        results = [getattr(g, method)(*args) for g in self.gwlbs]
        assert all(r == results[0] for r in results), f"{method}{args!r}: results differ: {results}"
        return results[0]

    def check_state(self) -> None:
        states = [state(g) for g in self.gwlbs]
        for name in states[0]:
            assert all(s[name] == states[0][name] for s in states), f"{name} differs: {[s[name] for s in states]}"


def twins(settings: Settings, seed: int) -> Twins:
    clock = Clock()
    gwlbs = [kind(ENDPOINTS, TARGETS, settings, clock, random.Random(seed)) for kind in (Gwlb, CachedGwlb, DeferredGwlb)]
    for gwlb in gwlbs:
        for target in range(len(TARGETS)):
            gwlb.set_health(target, True)
    return Twins(gwlbs, clock)


def returned_variant(rng: random.Random, sent: Encapsulated) -> tuple[bytes, int, int, bytes]:
    """What a target might send back for `sent`: mostly an exact echo, sometimes wrong."""
    address = ipaddress.IPv4Address(TARGETS[sent.target].address).packed
    header, inner = sent.payload[:geneve.AWS_HEADER_LENGTH], sent.payload[geneve.AWS_HEADER_LENGTH:]
    port, dest = sent.source_port, geneve.GENEVE_PORT
    roll = rng.random()
    if roll < 0.55:
        pass
    elif roll < 0.62:
        port = geneve.GENEVE_PORT
    elif roll < 0.67:
        address = ipaddress.IPv4Address(rng.choice(TARGETS).address).packed
    elif roll < 0.69:
        address = bytes([10, 9, 9, 9])
    elif roll < 0.71:
        dest = 4789
    elif roll < 0.82:
        inner = rng.choice(POOL)
    elif roll < 0.88:
        at, bit = rng.choice(((1, 0x01), (4, 0x01), (7, 0x01), (10, 0x01), (37, 0x01), (36, 0x20)))
        header = header[:at] + bytes([header[at] ^ bit]) + header[at + 1:]
    elif roll < 0.92:
        header = header + bytes([0x02, 0x00, 0x01, 0x01, 0, 0, 0, 42])
        header = bytes([header[0] + 2]) + header[1:]
    elif roll < 0.95:
        inner = b""
    else:
        inner = bytes(IP(src=CLIENTS[0], dst=SERVERS[0]) / UDP(sport=40000, dport=53) / Raw(bytes(MAX_INNER - 27)))
    return address, port, dest, header + inner


def drive(pair: Twins, rng: random.Random, steps: int, check_every: int, endpoints: int = len(ENDPOINTS)) -> None:
    sent: list[Encapsulated] = []
    for step in range(steps):
        roll = rng.random()
        if roll < 0.45:
            inner = rng.choice(STEADY if rng.random() < 0.7 else POOL)
            result = pair.call("from_endpoint", rng.randrange(endpoints), inner)
            if isinstance(result, Encapsulated):
                sent.append(result)
                del sent[:-200]
        elif roll < 0.9 and sent:
            recent = sent[-40:] if rng.random() < 0.9 else sent
            pair.call("from_target", *returned_variant(rng, rng.choice(recent)))
        elif roll < 0.96:
            pair.clock.now += rng.choice((0.05, 0.3, 0.3, 0.7, 0.7, 1.0, 1.0, 3.0, 3.0, 6.0) * 3
                                         + (TIMEOUTS.other_idle_s + 1, TIMEOUTS.tcp_idle_s + 1))
            if rng.random() < 0.5:
                pair.call("tick")
        else:
            target = rng.randrange(len(TARGETS))
            action = rng.choice(("set_health", "set_health", "deregister", "register"))
            if action == "set_health":
                pair.call("set_health", target, rng.random() < 0.6)
            else:
                pair.call(action, target)
        if step % check_every == 0:
            pair.check_state()
    pair.check_state()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("variant", VARIANTS)
def test_same_results_and_state_as_python(variant: str, seed: int) -> None:
    pair = twins(VARIANTS[variant], seed)
    drive(pair, random.Random(seed), steps=3000, check_every=97)
    stats = [g.cache.stats() for g in pair.gwlbs[1:]]
    for s in stats:
        assert s["forwarded"] > 200 and s["delivered"] > 200, f"the cache was hardly used: {s}"
        assert s["forward_misses"] > 100 and s["return_misses"] > 100, f"the slow path was hardly used: {s}"


@pytest.mark.parametrize("variant", ["five-tuple", "five-tuple-rebalance-cross-zone"])
def test_endpoints_added_while_traffic_runs(variant: str) -> None:
    """Endpoints join mid-traffic (one in a known zone, one in a new zone) and all paths still agree."""
    pair = twins(VARIANTS[variant], 5)
    rng = random.Random(5)
    drive(pair, rng, steps=800, check_every=97)
    late = [EndpointSpec("e-c", 0x0CCCCDDDDEEEEFFFF, 0x0102030405060708, "a"),
            EndpointSpec("e-d", 0x0DDDDEEEEFFFF0000, 0x0807060504030201, "c")]
    for index, spec in enumerate(late, start=len(ENDPOINTS)):
        assert pair.call("add_endpoint", spec) == index
        drive(pair, rng, steps=800, check_every=97, endpoints=index + 1)
    flows = pair.gwlbs[1].flows.flows()
    assert {f.key.endpoint for f in flows} >= {2, 3} if variant.endswith("cross-zone") else {2}


def test_state_is_checked_after_every_call() -> None:
    """The same traffic, with the state compared after every single call (folds at each step)."""
    pair = twins(VARIANTS["five-tuple"], 11)
    drive(pair, random.Random(11), steps=600, check_every=1)


def test_peaks_when_hits_are_folded_late() -> None:
    """Hits counted over several seconds and folded at once give the peaks Python computes."""
    clock = Clock()
    plain, deferred = (kind(ENDPOINTS, TARGETS, VARIANTS["five-tuple"], clock, random.Random(4)) for kind in (Gwlb, DeferredGwlb))
    inner = bytes(IP(src=CLIENTS[0], dst=SERVERS[0]) / UDP(sport=40000, dport=53) / Raw(bytes(30)))
    for gwlb in (plain, deferred):
        gwlb.set_health(0, True)
        gwlb.from_endpoint(0, inner)
    for burst in (5, 9, 2, 7):
        for _ in range(burst):
            assert plain.from_endpoint(0, inner) == deferred.from_endpoint(0, inner)
        clock.now += 1.0
    assert deferred.cache.stats()["forwarded"] == 23
    assert state(plain) == state(deferred)
    assert deferred.metrics.total.peak_packets_per_second == 9
    assert deferred.metrics.zones["a"].processed_packets == 24


def test_fuzzer_sees_the_same_outcomes_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = fuzzing.capture_corpus(Path(__file__).parent / "data" / "gwlbtun-v3.0-route.pcap") + fuzzing.synthetic_corpus()
    plain = fuzzing.Fuzzer(17, corpus)
    plain.run(20_000)
    monkeypatch.setattr(fuzzing, "Gwlb", CachedGwlb)
    cached = fuzzing.Fuzzer(17, corpus)
    cached.run(20_000)
    assert cached.report.crash_count == plain.report.crash_count == 0
    assert cached.report.outcomes == plain.report.outcomes
    for python, fast in zip(plain.gwlbs, cached.gwlbs):
        assert state(python) == state(fast)
    assert sum(g.cache.stats()["delivered"] for g in cached.gwlbs) > 500


def test_cache_refuses_calls_without_the_lock() -> None:
    gwlb = CachedGwlb(ENDPOINTS, TARGETS, VARIANTS["five-tuple"], Clock())
    with pytest.raises(RuntimeError, match="without holding its lock"):
        gwlb.cache.forward(0, POOL[0])
    with gwlb.lock:
        with pytest.raises(RuntimeError, match="not reentrant"):
            gwlb.cache.acquire()


def test_an_entry_for_a_key_held_by_another_cookie_is_refused() -> None:
    gwlb = CachedGwlb(ENDPOINTS, TARGETS, VARIANTS["five-tuple"], Clock())
    gwlb.set_health(0, True)
    assert isinstance(gwlb.from_endpoint(0, POOL[0]), Encapsulated)
    (flow,) = gwlb.flows.flows()
    header = flow.header[:36] + (flow.cookie ^ 1).to_bytes(4, "big")
    twin = replace(flow, cookie=flow.cookie ^ 1, header=header, reply_header=header)
    with gwlb.lock, pytest.raises(RuntimeError, match="another cookie already holds the key"):
        gwlb._used(twin)


@pytest.mark.parametrize(
    ("value", "expected"), [("", Datapath.FAST), ("fast", Datapath.FAST), ("python", Datapath.PYTHON)]
)
def test_datapath_from_the_environment(value: str, expected: Datapath) -> None:
    assert fastpath.choose_datapath({fastpath.ENV: value} if value else {}) is expected


def test_datapath_errors_and_fallback(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="GWLB_DATAPATH='c': expected 'python' or 'fast'"):
        fastpath.choose_datapath({fastpath.ENV: "c"})
    monkeypatch.setattr(fastpath, "AVAILABLE", False)
    monkeypatch.setattr(fastpath, "IMPORT_ERROR", "no module named _fastpath")
    with pytest.raises(RuntimeError, match="GWLB_DATAPATH=fast, but .* does not import"):
        fastpath.choose_datapath({fastpath.ENV: "fast"})
    assert fastpath.choose_datapath({}) is Datapath.PYTHON
    assert "using the Python data path" in caplog.text


# ---- the event loop, on loopback in a namespace of its own --------------------------------------

GWLB_ADDRESS = "127.0.0.1"
LOOP_TARGETS = [TargetSpec("t1", "127.0.0.2", "a"), TargetSpec("t2", "127.0.0.3", "a")]


@dataclass
class Rig:
    gwlb: CachedGwlb
    endpoints: list[socket.socket]
    devices: list[socket.socket]
    targets: list[socket.socket]
    rx: socket.socket
    tx: socket.socket
    thread: threading.Thread
    namespace: str

    def geneve(self, timeout_s: float = 2.0) -> tuple[int, bytes, int]:
        """The next GENEVE payload a target received: (target, payload, outer source port)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for index, sock in enumerate(self.targets):
                try:
                    payload, (_, port) = sock.recvfrom(65536)
                    return index, payload, port
                except BlockingIOError:
                    continue
            time.sleep(0.002)
        raise AssertionError("no GENEVE packet reached a target")

    def delivered(self, endpoint: int, timeout_s: float = 2.0) -> bytes:
        self.endpoints[endpoint].settimeout(timeout_s)
        return self.endpoints[endpoint].recv(65536)

    def echo(self, target: int, payload: bytes, source_port: int) -> None:
        with netns.entered(self.namespace):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOP_TARGETS[target].address, source_port))
        sock.sendto(payload, (GWLB_ADDRESS, geneve.GENEVE_PORT))
        sock.close()


@pytest.fixture
def rig() -> Any:
    if os.geteuid() != 0:
        pytest.skip("raw sockets and a network namespace: needs root")
    name = f"fpt{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    opened: list[socket.socket] = []
    gwlb = None
    thread = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        with netns.entered(f"/run/netns/{name}"):
            rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
            tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            targets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in LOOP_TARGETS]
            opened += [rx, tx, *targets]
        rx.setblocking(False)
        for sock, spec in zip(targets, LOOP_TARGETS):
            sock.bind((spec.address, geneve.GENEVE_PORT))
            sock.setblocking(False)
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in ENDPOINTS]
        opened += [s for pair in pairs for s in pair]
        for device, _ in pairs:
            device.setblocking(False)
        gwlb = CachedGwlb(ENDPOINTS, LOOP_TARGETS, Settings(Stickiness.FIVE_TUPLE, TIMEOUTS))
        gwlb.set_health(0, True)
        gwlb.set_health(1, True)
        address = ipaddress.IPv4Address(GWLB_ADDRESS).packed

        def on_forward(endpoint: int, inner: bytes) -> None:
            result = gwlb.from_endpoint(endpoint, inner)
            if isinstance(result, Encapsulated):
                target = LOOP_TARGETS[result.target]
                tx.sendto(build_ipv4_udp(address, target.packed, result.source_port, geneve.GENEVE_PORT, result.payload),
                          (target.address, 0))

        def on_return(packet: bytes) -> None:
            datagram = parse_ipv4_udp(packet)
            if datagram.dst == address:
                result = gwlb.from_target(datagram.src, datagram.sport, datagram.dport, datagram.payload)
                if isinstance(result, Delivery):
                    os.write(devices[result.endpoint].fileno(), result.inner)

        devices = [device for device, _ in pairs]
        thread = threading.Thread(target=gwlb.cache.serve, args=([d.fileno() for d in devices], rx.fileno(), tx.fileno(),
                                                                  address, on_forward, on_return))
        thread.start()
        yield Rig(gwlb, [peer for _, peer in pairs], devices, targets, rx, tx, thread, f"/run/netns/{name}")
    finally:
        if gwlb is not None and thread is not None:
            gwlb.cache.stop()
            thread.join(5)
            assert not thread.is_alive(), "serve() did not return after stop()"
        for sock in opened:
            sock.close()
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.requires_root
def test_serve_forwards_returns_and_keeps_order(rig: Rig) -> None:
    def tcp(flags: str, seq: int) -> bytes:
        return bytes(IP(src=CLIENTS[0], dst=SERVERS[0]) / TCP(sport=40000, dport=443, flags=flags, seq=seq) / Raw(b"x" * 20))

    stream = [tcp("S", 0)] + [tcp("A", n) for n in range(1, 40)] + [tcp("FA", 40)] + [tcp("A", n) for n in range(41, 60)]
    for inner in stream:
        rig.endpoints[0].send(inner)
    received = [rig.geneve() for _ in stream]
    assert [payload[geneve.AWS_HEADER_LENGTH:] for _, payload, _ in received] == stream, "packets reordered or altered"
    (flow,) = rig.gwlb.flows.flows()
    assert {(t, payload[:geneve.AWS_HEADER_LENGTH], port) for t, payload, port in received} == \
        {(flow.target, flow.header, flow.source_port)}
    stats = rig.gwlb.cache.stats()
    assert stats["forwarded"] >= len(stream) - 3 and stats["forward_misses"] >= 2

    for _, payload, port in received[:30]:
        rig.echo(flow.target, payload, port)
    assert [rig.delivered(0) for _ in range(30)] == stream[:30]
    altered = bytes([received[0][1][0]]) + b"\x01" + received[0][1][2:]
    rig.echo(flow.target, altered, flow.source_port)
    assert rig.delivered(0) == stream[0]
    assert rig.gwlb.cache.stats()["delivered"] >= 29

    with rig.gwlb.lock:
        assert flow.packets == [len(stream), 0] and flow.returned == [31, 0]
        assert rig.gwlb.target_packets[flow.target] == len(stream)
        assert rig.gwlb.metrics.total.processed_packets == len(stream) + 31
        assert set(rig.gwlb.mismatches) == {flow.cookie}


@pytest.mark.requires_root
def test_serve_reads_an_endpoint_added_while_it_runs(rig: Rig) -> None:
    first = bytes(IP(src=CLIENTS[0], dst=SERVERS[0]) / UDP(sport=40000, dport=53) / Raw(b"running"))
    rig.endpoints[0].send(first)
    _, running, running_port = rig.geneve()
    device, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    device.setblocking(False)
    rig.devices.append(device)
    rig.endpoints.append(peer)
    try:
        late = EndpointSpec("e-late", 0x0CCCCDDDDEEEEFFFF, 0x0102030405060708, "a")
        index = rig.gwlb.add_endpoint(late)
        rig.gwlb.serve_endpoint(index, device.fileno())
        for _ in range(5):
            peer.send(first)
        received = [rig.geneve() for _ in range(5)]
        meta = geneve.AwsMetadata.from_header(geneve.GeneveHeader.decode(received[0][1]))
        assert (meta.eni_id, meta.attachment_id) == (late.eni_id, late.attachment_id)
        for target, payload, port in received:
            rig.echo(target, payload, port)
        assert [rig.delivered(index) for _ in received] == [first] * 5
        rig.endpoints[0].send(first)
        target, again, port = rig.geneve()
        assert (again, port) == (running, running_port)
        rig.echo(target, again, port)
        assert rig.delivered(0) == first
        assert rig.gwlb.cache.stats()["delivered"] >= 4, "the late endpoint's echoes were not fast-path hits"
        with pytest.raises(ValueError, match="has a tun fd already"):
            rig.gwlb.serve_endpoint(index, device.fileno())
    finally:
        device.close()
        peer.close()


def test_serve_hands_a_slow_path_error_back_to_the_caller() -> None:
    gwlb = CachedGwlb(ENDPOINTS, LOOP_TARGETS, Settings(Stickiness.FIVE_TUPLE, TIMEOUTS))
    device, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    other, other_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    failures: list[BaseException] = []

    def broken(*args: object) -> None:
        raise KeyError("slow path failed")

    def serve() -> None:
        try:
            gwlb.cache.serve([device.fileno(), other.fileno()], rx.fileno(), tx.fileno(), b"\x7f\x00\x00\x01", broken, broken)
        except KeyError as error:
            failures.append(error)

    try:
        for sock in (device, other, rx):
            sock.setblocking(False)
        thread = threading.Thread(target=serve)
        thread.start()
        peer.send(POOL[0])
        thread.join(5)
        assert not thread.is_alive()
        assert [str(f) for f in failures] == ["'slow path failed'"]
    finally:
        for sock in (device, peer, other, other_peer, rx, tx):
            sock.close()
