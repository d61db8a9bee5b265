"""Tests of the reference appliance (appliance-images/reference/refappliance).

Unit tests cover the pure parts without privileges: GENEVE parsing against the gwlbtun capture and
scapy's dissector, flow keys, the flow cache with an injected clock, tun names, and the faults.

The end-to-end test needs root and builds its own two namespaces:

    rt<pid>a  "tiny GWLB"                         rt<pid>b  appliance
    10.250.0.2/24 ===== veth, MTU 9001 ===== 10.250.0.1/24
    UDP 40001 --GENEVE--> 6081             refappliance -> gwi-… -> kernel routes -> gwo-…
    UDP 6081  <--reply--- (src port 40001)  <- re-encapsulated with the cached header
"""

from __future__ import annotations

import ast
import ctypes
import http.client
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parent.parent / "appliance-images" / "reference"
sys.path.insert(0, str(REFERENCE))

from refappliance import geneve  # noqa: E402
from refappliance.cli import build_parser  # noqa: E402
from refappliance.faults import FAULTS, FaultSet, Point  # noqa: E402
from refappliance.flows import FlowCache, FlowEntry, flow_key, sender  # noqa: E402
from refappliance.stats import Drop, PacketDropped  # noqa: E402
from refappliance.tunnels import encode_eni, endpoint_label, tun_names  # noqa: E402

scapy_all = pytest.importorskip("scapy.all")
IP, IPv6, UDP, TCP, ICMP, Raw = (scapy_all.IP, scapy_all.IPv6, scapy_all.UDP, scapy_all.TCP,
                                 scapy_all.ICMP, scapy_all.Raw)

PCAP = Path("/work/shared/vectors/gwlbtun-v3.0-route.pcap")
ENI = 0x2B8EE1D4DB0C51C4
ATTACHMENT = 0x1122334455667788


def aws_header(*, cookie: int, eni: int = ENI, protocol: int = 0x0800, version: int = 0,
               extra: bytes = b"") -> bytes:
    """GENEVE base header plus the three AWS options (and `extra` raw options after them)."""
    options = (struct.pack("!HBBQ", 0x0108, 1, 2, eni) + struct.pack("!HBBQ", 0x0108, 2, 2, ATTACHMENT)
               + struct.pack("!HBBI", 0x0108, 3, 1, cookie) + extra)
    return bytes([version << 6 | len(options) // 4, 0]) + struct.pack("!HI", protocol, 0) + options


def udp4(payload: bytes = b"hello", sport: int = 1234, dport: int = 5678) -> bytes:
    return bytes(IP(src="10.1.0.1", dst="10.2.0.1", ttl=64) / UDP(sport=sport, dport=dport) / Raw(payload))


# --- GENEVE parsing --------------------------------------------------------------------------------

def gwlb_requests() -> list[bytes]:
    if not PCAP.exists():
        pytest.skip(f"test vector {PCAP} not present")
    return [bytes(p[UDP].payload) for p in scapy_all.rdpcap(str(PCAP))
            if UDP in p and p[IP].src == "192.168.100.1"]


# Requests in the capture, in order (vectors/README.md), and what a strict appliance does with them.
PCAP_OUTCOMES = [
    None, None, None, None, None, None, None,  # UDP, ICMP, SYN, IPv6, 8500 B, 8501 B, new cookie
    Drop.UNKNOWN_CRITICAL_OPTION,  # AWS option with the critical bit
    Drop.UNKNOWN_CRITICAL_OPTION,  # unknown class 0xFFF0, critical
    None,  # the same, not critical
    None,  # UDP 8501 B
    Drop.BAD_VERSION,
    Drop.OPTLEN_OVERRUN,
    None,  # only options 1 and 2
]


def test_parse_gwlbtun_capture_requests() -> None:
    requests = gwlb_requests()
    assert len(requests) == len(PCAP_OUTCOMES)
    for index, (data, outcome) in enumerate(zip(requests, PCAP_OUTCOMES)):
        if outcome is not None:
            with pytest.raises(PacketDropped) as caught:
                geneve.parse(data)
            assert caught.value.reason is outcome, f"request {index}"
            continue
        packet = geneve.parse(data)
        optlen = (data[0] & 0x3F) * 4
        assert packet.header == data[:8 + optlen], f"request {index}"
        assert packet.payload == data[8 + optlen:]
        assert packet.eni == ENI


def test_options_agree_with_scapy_dissector() -> None:
    from scapy.contrib.geneve import GENEVE

    for data in gwlb_requests():
        try:
            packet = geneve.parse(data)
        except PacketDropped:
            continue
        ours = [(o.klass, o.type, o.value) for o in geneve.options(packet.header)]
        theirs = [(o.classid, o.type, bytes(o.data)) for o in GENEVE(data).options]
        assert ours == theirs


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x00\x00\x08", Drop.TRUNCATED),
    (aws_header(cookie=1, version=1) + udp4(), Drop.BAD_VERSION),
    (bytes([0x3F]) + aws_header(cookie=1)[1:] + udp4(), Drop.OPTLEN_OVERRUN),
    (aws_header(cookie=1, protocol=0x6558) + udp4(), Drop.BAD_PROTOCOL),
    (aws_header(cookie=1, extra=struct.pack("!HBB", 0xFFF0, 0x05, 3)) + udp4(), Drop.OPTION_OVERRUN),
    (aws_header(cookie=1, extra=struct.pack("!HBBI", 0xFFF0, 0x85, 1, 0)) + udp4(), Drop.UNKNOWN_CRITICAL_OPTION),
    (bytes([0x02, 0]) + struct.pack("!HIHBBI", 0x0800, 0, 0x0108, 3, 1, 7) + udp4(), Drop.MISSING_ENI_OPTION),
    (bytes([0x02, 0]) + struct.pack("!HIHBBI", 0x0800, 0, 0x0108, 1, 1, 7) + udp4(), Drop.BAD_ENI_OPTION),
    (aws_header(cookie=1), Drop.EMPTY_PAYLOAD),
    (aws_header(cookie=1, protocol=0x86DD) + udp4(), Drop.BAD_INNER),
], ids=lambda value: value.value if isinstance(value, Drop) else "")
def test_parse_drops_with_named_reason(data: bytes, reason: Drop) -> None:
    with pytest.raises(PacketDropped) as caught:
        geneve.parse(data)
    assert caught.value.reason is reason


def test_parse_keeps_unknown_non_critical_options_byte_for_byte() -> None:
    header = aws_header(cookie=9, extra=struct.pack("!HBBI", 0xFFF0, 0x05, 1, 0xABCDEF01))
    assert geneve.parse(header + udp4()).header == header


def test_parse_survives_mutated_packets() -> None:
    rng = random.Random(8926)
    seeds = [aws_header(cookie=1) + udp4(),
             aws_header(cookie=1, protocol=0x86DD) + bytes(IPv6() / scapy_all.IPv6ExtHdrHopByHop() / UDP())]
    for _ in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            if data and rng.random() < 0.7:
                data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                data = data[:rng.randrange(len(data) + 1)]
        try:
            packet = geneve.parse(bytes(data))
            flow_key(packet.eni, packet.payload[:rng.randrange(1, len(packet.payload) + 1)])
        except PacketDropped:
            pass


def test_outer_header_fields() -> None:
    outer = geneve.outer_header(src="10.250.0.1", dst="10.250.0.2", sport=40001, dport=6081, payload_len=100)
    ip = IP(outer + bytes(100))
    assert (ip.src, ip.dst, ip.ttl, str(ip.flags), ip.len) == ("10.250.0.1", "10.250.0.2", 64, "DF", 128)
    assert (ip[UDP].sport, ip[UDP].dport, ip[UDP].len, ip[UDP].chksum) == (40001, 6081, 108, 0)


# --- flows -----------------------------------------------------------------------------------------

def test_flow_key_is_symmetric_and_scoped_to_the_endpoint() -> None:
    there = udp4(sport=1111, dport=2222)
    back = bytes(IP(src="10.2.0.1", dst="10.1.0.1") / UDP(sport=2222, dport=1111))
    assert flow_key(ENI, there) == flow_key(ENI, back)
    assert flow_key(ENI, there) != flow_key(ENI + 1, there)
    assert flow_key(ENI, there) != flow_key(ENI, udp4(sport=1112, dport=2222))
    v6_there = bytes(IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=80, dport=4000))
    v6_back = bytes(IPv6(src="fd00::2", dst="fd00::1") / TCP(sport=4000, dport=80))
    assert flow_key(ENI, v6_there) == flow_key(ENI, v6_back)
    assert flow_key(ENI, v6_there).protocol == 6


def test_flow_key_has_no_ports_for_icmp_and_fragments() -> None:
    request = bytes(IP(src="10.1.0.1", dst="10.2.0.1") / ICMP(type=8, id=7))
    reply = bytes(IP(src="10.2.0.1", dst="10.1.0.1") / ICMP(type=0, id=7))
    assert flow_key(ENI, request) == flow_key(ENI, reply)
    assert flow_key(ENI, request).low[1] == 0
    fragment = bytes(IP(src="10.1.0.1", dst="10.2.0.1", flags="MF") / UDP(sport=1, dport=2) / Raw(b"x" * 16))
    assert flow_key(ENI, fragment).low[1] == flow_key(ENI, fragment).high[1] == 0
    with pytest.raises(PacketDropped) as caught:
        flow_key(ENI, b"\x45\x00")
    assert caught.value.reason is Drop.BAD_INNER


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(cookie: int) -> FlowEntry:
    return FlowEntry(aws_header(cookie=cookie), ("10.250.0.2", 40001), "10.250.0.1")


def test_flow_cache_refreshes_on_every_packet_from_the_gwlb() -> None:
    cache, key = FlowCache(350, clock=Clock()), flow_key(ENI, udp4())
    assert cache.get(key) is None
    cache.update(key, entry(1))
    cache.update(key, entry(2))
    assert cache.get(key) == entry(2)
    cache.update(key, entry(3), refresh=False)
    assert cache.get(key) == entry(2)
    assert len(cache) == 1


def test_flow_cache_keeps_one_header_per_direction() -> None:
    """Tencent's cookie word carries the direction: a reply echoes the header its own packet came
    with, even after the other direction's packet arrived; a sender never seen (NAT return
    traffic) gets the latest header; the one-header-per-flow fault collapses the senders."""
    there, back = udp4(), bytes(IP(src="10.2.0.1", dst="10.1.0.1") / UDP(sport=5678, dport=1234))
    cache, key = FlowCache(350, clock=Clock()), flow_key(ENI, there)
    assert (sender(there), sender(back)) == (bytes([10, 1, 0, 1]), bytes([10, 2, 0, 1]))
    forward = FlowEntry(b"forward", ("10.250.0.2", 40001), "10.250.0.1", sender(there))
    reverse = FlowEntry(b"reverse", ("10.250.0.2", 40001), "10.250.0.1", sender(back))
    cache.update(key, forward)
    cache.update(key, reverse)
    assert (cache.get(key, sender(there)), cache.get(key, sender(back))) == (forward, reverse)
    assert cache.get(key, bytes([10, 9, 9, 9])) == reverse
    assert cache.update(key, replace(forward, header=b"new"), refresh=False) == forward
    assert len(cache) == 1
    assert FaultSet(["one-header-per-flow"]).apply(Point.SENDER, sender(there)) == b""


def test_reference_appliance_knows_tencents_option_class() -> None:
    header = aws_header(cookie=0x20000001).replace(b"\x01\x08", b"\x01\x67")
    assert geneve.parse(header + udp4()).eni == ENI


def test_flow_cache_expires_idle_flows_only() -> None:
    clock = Clock()
    cache = FlowCache(350, clock=clock)
    idle, busy = flow_key(ENI, udp4(sport=1)), flow_key(ENI, udp4(sport=2))
    cache.update(idle, entry(1))
    cache.update(busy, entry(2))
    clock.now += 300
    assert cache.get(busy) == entry(2)
    clock.now += 100
    assert cache.expire() == 1
    assert cache.get(idle) is None
    assert cache.get(busy) == entry(2)
    clock.now += 351
    assert cache.get(busy) is None
    assert len(cache) == 0


# --- tun names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("eni", [0, 1, ENI, (1 << 64) - 1])
def test_tun_names_fit_and_encode_the_endpoint(eni: int) -> None:
    ingress, egress = tun_names(eni)
    assert ingress == "gwi-" + encode_eni(eni) and egress == "gwo-" + encode_eni(eni)
    assert len(ingress) == len(egress) == 15
    assert endpoint_label(eni) == f"vpce-{eni:017x}"


def test_tun_names_are_distinct_and_reject_out_of_range() -> None:
    enis = [0, 1, 61, 62, ENI, ENI + 1, (1 << 64) - 1]
    assert len({encode_eni(eni) for eni in enis}) == len(enis)
    assert encode_eni(0) == "00000000000" and encode_eni(62) == "00000000010"
    with pytest.raises(ValueError, match="64-bit"):
        encode_eni(1 << 64)


# --- faults ----------------------------------------------------------------------------------------

def test_fault_registry_and_help() -> None:
    required = {"strip-options", "reverse-ports", "stale-cookie", "flip-cookie", "truncate-jumbo",
                "health-503", "dead-dataplane"}
    assert required <= set(FAULTS)
    help_text = build_parser().format_help()
    assert all(name in help_text for name in FAULTS)
    with pytest.raises(ValueError, match="unknown fault"):
        FaultSet(["no-such-fault"])


def test_faults_act_only_at_their_point() -> None:
    header = aws_header(cookie=0x12345678)
    none = FaultSet()
    for point, value in [(Point.HEADER, header), (Point.PORTS, (40001, 6081)), (Point.REFRESH, True),
                         (Point.INGRESS, b"x" * 2000), (Point.EGRESS, b"packet"), (Point.HEALTH, 200)]:
        assert none.apply(point, value) == value
    assert FaultSet(["strip-options"]).apply(Point.HEADER, header) == bytes(2) + header[2:8]
    assert FaultSet(["flip-cookie"]).apply(Point.HEADER, header) == header[:-1] + b"\x79"
    assert FaultSet(["reverse-ports"]).apply(Point.PORTS, (40001, 6081)) == (6081, 40001)
    assert FaultSet(["stale-cookie"]).apply(Point.REFRESH, True) is False
    jumbo = FaultSet(["truncate-jumbo"])
    assert jumbo.apply(Point.INGRESS, b"x" * 1501) is None and jumbo.apply(Point.INGRESS, b"x" * 1500)
    assert FaultSet(["health-503"]).apply(Point.HEALTH, 200) == 503
    assert FaultSet(["dead-dataplane"]).apply(Point.EGRESS, b"packet") is None
    assert FaultSet(["flip-cookie"]).apply(Point.HEADER, header) != header
    assert none.apply(Point.NEW_TUNNEL, True) is True


def test_tunnels_at_start_refuses_endpoints_seen_later(monkeypatch: pytest.MonkeyPatch) -> None:
    from refappliance import faults

    now = [100.0]
    monkeypatch.setattr(faults.time, "monotonic", lambda: now[0])
    allow = faults._tunnels_at_start(window_s=1.0)
    assert allow(True)
    now[0] += 0.9
    assert allow(True), "an endpoint seen within the window gets its tunnel"
    now[0] += 0.2
    assert not allow(True), "an endpoint seen after the window is refused"


def test_appliance_imports_only_the_standard_library() -> None:
    for module in (REFERENCE / "refappliance").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "refappliance", f"{module.name} imports {name}"


# --- end to end (root) -----------------------------------------------------------------------------

APPLIANCE_IP, GWLB_IP = "10.250.0.1", "10.250.0.2"
GWLB_PORT, HEALTH_PORT = 40001, 8080
CLONE_NEWNET = 0x40000000


def sh(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Switch this thread into namespace `name` (sockets made inside stay there) and back."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{name}") as target:
        if libc.setns(target.fileno(), CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace")


@pytest.fixture(scope="module")
def namespaces() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, tun devices and raw sockets")
    if not Path("/dev/net/tun").exists():
        pytest.skip("no /dev/net/tun")
    gwlb, appliance = f"rt{os.getpid()}a", f"rt{os.getpid()}b"
    try:
        sh("ip", "netns", "add", gwlb)
        sh("ip", "netns", "add", appliance)
        sh("ip", "-n", gwlb, "link", "add", "veth0", "mtu", "9001", "type", "veth",
           "peer", "name", "veth0", "netns", appliance, "mtu", "9001")
        for ns, address in ((gwlb, GWLB_IP), (appliance, APPLIANCE_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "veth0")
            sh("ip", "-n", ns, "link", "set", "veth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield gwlb, appliance
    finally:
        for ns in (gwlb, appliance):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class TinyGwlb:
    """Sends GENEVE from UDP 40001 and listens for replies on 6081 (and, to see misdirected ones, on 40001)."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        with in_netns(ns):
            self.replies = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.replies.bind(("0.0.0.0", geneve.PORT))
            self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sender.bind(("0.0.0.0", GWLB_PORT))

    def close(self) -> None:
        self.replies.close()
        self.sender.close()

    def send(self, header: bytes, inner: bytes) -> None:
        self.sender.sendto(header + inner, (APPLIANCE_IP, geneve.PORT))

    def expect_reply(self, on: socket.socket | None = None, timeout: float = 3.0) -> tuple[bytes, tuple[str, int]]:
        sock = on or self.replies
        sock.settimeout(timeout)
        try:
            return sock.recvfrom(65535)
        except TimeoutError:
            raise AssertionError(f"no reply within {timeout} s on port {sock.getsockname()[1]}") from None

    def expect_no_reply(self, on: socket.socket | None = None, timeout: float = 1.0) -> None:
        sock = on or self.replies
        sock.settimeout(timeout)
        try:
            data, source = sock.recvfrom(65535)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected reply from {source} on port {sock.getsockname()[1]}: {data[:48].hex()}")

    def health(self, path: str = "/health") -> tuple[int, dict]:
        connection = http.client.HTTPConnection(APPLIANCE_IP, HEALTH_PORT, timeout=3)
        with in_netns(self.ns):
            connection.connect()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


@pytest.fixture
def start_appliance(namespaces: tuple[str, str], tmp_path: Path) -> Iterator[Callable[..., TinyGwlb]]:
    gwlb_ns, appliance_ns = namespaces
    started: list[tuple[subprocess.Popen, TinyGwlb, Path]] = []

    def start(*faults: str) -> TinyGwlb:
        log = tmp_path / f"appliance{len(started)}.log"
        command = ["ip", "netns", "exec", appliance_ns, sys.executable, str(REFERENCE / "refappliance"),
                   "--health-port", str(HEALTH_PORT), "--create-hook", str(REFERENCE / "hooks" / "route.sh")]
        for fault in faults:
            command += ["--fault", fault]
        with log.open("w") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        gwlb = TinyGwlb(gwlb_ns)
        started.append((process, gwlb, log))
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise AssertionError(f"appliance exited {process.returncode}: {log.read_text()}")
            try:
                gwlb.health()
                return gwlb
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"health endpoint not up after 15 s: {log.read_text()}") from None
                time.sleep(0.1)

    yield start
    for process, gwlb, log in started:
        gwlb.close()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(f"appliance ignored SIGTERM: {log.read_text()}") from None
        assert process.returncode == 0, log.read_text()
    for what in (["link", "show"], ["rule"], ["-6", "rule"]):
        assert "gwi-" not in sh("ip", "-n", appliance_ns, *what), f"ip {' '.join(what)} after shutdown"


def assert_routed(sent: bytes, got: bytes) -> None:
    """The inner packet came back whole; only TTL/hop limit (down by one) and the IPv4 checksum changed."""
    assert len(got) == len(sent), f"inner length {len(got)}, sent {len(sent)}"
    if sent[0] >> 4 == 4:
        assert got[8] == sent[8] - 1
        assert got[:8] + got[9:10] + got[12:] == sent[:8] + sent[9:10] + sent[12:]
    else:
        assert got[7] == sent[7] - 1
        assert got[:7] + got[8:] == sent[:7] + sent[8:]


def round_trip(gwlb: TinyGwlb, header: bytes, inner: bytes) -> None:
    gwlb.send(header, inner)
    data, source = gwlb.expect_reply()
    assert source == (APPLIANCE_IP, GWLB_PORT), f"reply from {source}"
    assert data[:len(header)] == header, f"header {data[:len(header)].hex()} != {header.hex()}"
    assert_routed(inner, data[len(header):])


@pytest.mark.requires_root
def test_reference_appliance_end_to_end(start_appliance: Callable[..., TinyGwlb]) -> None:
    gwlb = start_appliance()
    round_trip(gwlb, aws_header(cookie=0x1111), udp4(b"hello through the kernel"))
    round_trip(gwlb, aws_header(cookie=0x2222),
               bytes(IP(src="10.1.0.1", dst="10.2.0.1") / ICMP(type=8, id=7, seq=1) / Raw(b"ping")))
    round_trip(gwlb, aws_header(cookie=0x3333, protocol=0x86DD),
               bytes(IPv6(src="fd00:1::1", dst="fd00:2::1") / UDP(sport=1234, dport=5678) / Raw(b"v6")))
    round_trip(gwlb, aws_header(cookie=0x4444), udp4(b"j" * (8500 - 28), sport=9000))
    round_trip(gwlb, aws_header(cookie=0x5555), udp4(b"hello again"))
    gwlb.send(aws_header(cookie=0x6666, version=1), udp4())
    gwlb.expect_no_reply()
    status, stats = gwlb.health()
    assert status == 200
    assert stats["drops"].get("bad-version") == 1
    assert stats["packets_in"] == 6 and stats["packets_out"] == 5
    assert stats["tunnels"] == [{"eni": endpoint_label(ENI), "ingress": tun_names(ENI)[0], "egress": tun_names(ENI)[1]}]
    assert stats["flows"] == 4
    assert gwlb.health("/")[0] == 200


@pytest.mark.requires_root
def test_strip_options_breaks_the_reply(start_appliance: Callable[..., TinyGwlb]) -> None:
    gwlb = start_appliance("strip-options")
    header = aws_header(cookie=0x1111)
    gwlb.send(header, udp4())
    data, _ = gwlb.expect_reply()
    assert data[:8] == bytes(2) + header[2:8]
    assert_routed(udp4(), data[8:])


@pytest.mark.requires_root
def test_reverse_ports_breaks_the_reply(start_appliance: Callable[..., TinyGwlb]) -> None:
    gwlb = start_appliance("reverse-ports")
    gwlb.send(aws_header(cookie=0x1111), udp4())
    gwlb.expect_no_reply()
    _, source = gwlb.expect_reply(on=gwlb.sender)
    assert source == (APPLIANCE_IP, geneve.PORT)


@pytest.mark.requires_root
def test_health_503_fault(start_appliance: Callable[..., TinyGwlb]) -> None:
    gwlb = start_appliance("health-503")
    assert gwlb.health()[0] == 503
