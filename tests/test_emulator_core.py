"""harness.emulator.core: what the emulated GWLB sends to targets and what it accepts back.

    client ─► endpoint e-a (zone a) ─┐             ┌─► t-a1 10.0.1.10 (zone a)
                                     ├─► Gwlb ─────┼─► t-a2 10.0.1.11 (zone a)
    client ─► endpoint e-b (zone b) ─┘   GENEVE    └─► t-b1 10.0.2.10 (zone b)

No sockets: inner packets are scapy-built bytes, returns are the encapsulated payloads echoed
(or deliberately altered) as a target would send them; the clock and RNG are injected. Every test
runs on both data paths: the pure-Python Gwlb and the CachedGwlb (compiled cache in front).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import replace

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.packet import Raw

from harness import geneve
from harness.emulator import fastpath
from harness.emulator.core import (
    MAX_INNER, Delivery, DropReason, Encapsulated, EndpointConflict, EndpointSpec, Gwlb, Settings, TargetSpec,
)
from harness.flows import Timeouts
from harness.topology import Stickiness

ENDPOINTS = [
    EndpointSpec("e-a", eni_id=0x02B8EE1D4DB0C51C4, attachment_id=0x1122334455667788, zone="a"),
    EndpointSpec("e-b", eni_id=0x0AAAABBBBCCCCDDDD, attachment_id=0x8877665544332211, zone="b"),
]
TARGETS = [
    TargetSpec("t-a1", "10.0.1.10", "a"),
    TargetSpec("t-a2", "10.0.1.11", "a"),
    TargetSpec("t-b1", "10.0.2.10", "b"),
]
CLIENT, SERVER = "192.0.2.10", "198.51.100.20"
TIMEOUTS = Timeouts(tcp_idle_s=350, other_idle_s=120)


class Clock:
    def __init__(self) -> None:
        self.now = [50.0]

    def __call__(self) -> float:
        return self.now[0]


MakeGwlb = Callable[..., Gwlb]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=list(fastpath.Datapath), ids=lambda d: d.value)
def datapath(request: pytest.FixtureRequest) -> fastpath.Datapath:
    if request.param is fastpath.Datapath.FAST and not fastpath.AVAILABLE:
        pytest.skip(f"the compiled fast path is not built: {fastpath.IMPORT_ERROR}")
    return request.param


@pytest.fixture
def make_gwlb(clock: Clock, datapath: fastpath.Datapath) -> MakeGwlb:
    def make(*, healthy: tuple[int, ...] = (0, 1, 2), **settings: object) -> Gwlb:
        base = Settings(Stickiness.FIVE_TUPLE, TIMEOUTS)
        gwlb = fastpath.gwlb_for(datapath)(ENDPOINTS, TARGETS, replace(base, **settings), clock, random.Random(99))
        for target in healthy:
            gwlb.set_health(target, True)
        return gwlb
    return make


@pytest.fixture
def gwlb(make_gwlb: MakeGwlb) -> Gwlb:
    return make_gwlb()


def udp(sport: int = 40000, size: int = 0, src: str = CLIENT, dst: str = SERVER) -> bytes:
    return bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=53) / Raw(bytes(size)))


def tcp(flags: str, sport: int = 40000, src: str = CLIENT, dst: str = SERVER) -> bytes:
    if src == SERVER:
        return bytes(IP(src=src, dst=dst) / TCP(sport=443, dport=sport, flags=flags))
    return bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=443, flags=flags))


def send(gwlb: Gwlb, inner: bytes, endpoint: int = 0) -> Encapsulated:
    result = gwlb.from_endpoint(endpoint, inner)
    assert isinstance(result, Encapsulated), f"expected the packet to be forwarded, it was dropped: {result}"
    return result


def back(gwlb: Gwlb, sent: Encapsulated, payload: bytes | None = None, *, source: str | None = None,
         source_port: int | None = None, dest_port: int = geneve.GENEVE_PORT) -> Delivery | DropReason:
    """What the target that got `sent` returns: by default an exact echo."""
    address = ipaddress.IPv4Address(source or TARGETS[sent.target].address).packed
    port = sent.source_port if source_port is None else source_port
    return gwlb.from_target(address, port, dest_port, sent.payload if payload is None else payload)


def with_header(sent: Encapsulated, header: geneve.GeneveHeader, inner: bytes | None = None) -> bytes:
    return header.encode() + (sent.payload[geneve.AWS_HEADER_LENGTH:] if inner is None else inner)


def sent_header(sent: Encapsulated) -> geneve.GeneveHeader:
    return geneve.GeneveHeader.decode(sent.payload)


def sent_meta(sent: Encapsulated) -> geneve.AwsMetadata:
    return geneve.AwsMetadata.from_header(sent_header(sent))


@pytest.mark.parametrize(
    ("inner", "protocol"),
    [(udp(), geneve.PROTO_IPV4),
     (bytes(IPv6(src="2001:db8::10", dst="2001:db8:1::20") / TCP(flags="S")), geneve.PROTO_IPV6)],
    ids=["ipv4", "ipv6"],
)
@pytest.mark.parametrize("endpoint", [0, 1])
def test_encapsulation_is_aws_header_plus_inner(gwlb: Gwlb, endpoint: int, inner: bytes, protocol: int) -> None:
    sent = send(gwlb, inner, endpoint)
    header, raw, rest = geneve.split(sent.payload)
    assert len(raw) == geneve.AWS_HEADER_LENGTH == 40
    assert rest == inner
    assert len(sent.payload) == 40 + len(inner)
    (flow,) = gwlb.flows.flows()
    spec = ENDPOINTS[endpoint]
    assert geneve.AwsMetadata.from_header(header) == geneve.AwsMetadata(spec.eni_id, spec.attachment_id, flow.cookie)
    assert header == geneve.aws_header(protocol, geneve.AwsMetadata(spec.eni_id, spec.attachment_id, flow.cookie))
    assert (header.vni, header.oam, header.critical) == (0, False, False)
    assert (sent.target, sent.source_port) == (flow.target, flow.source_port)


def test_both_directions_share_header_and_source_port(gwlb: Gwlb) -> None:
    first = send(gwlb, tcp("S"))
    second = send(gwlb, tcp("SA", src=SERVER, dst=CLIENT))
    assert (first.target, first.source_port) == (second.target, second.source_port)
    assert first.payload[:40] == second.payload[:40]
    assert gwlb.metrics.total.new_flows == 1


def test_largest_inner_passes_and_one_more_byte_is_dropped(gwlb: Gwlb) -> None:
    largest = udp(size=MAX_INNER - 28)
    assert len(largest) == 8500
    assert len(send(gwlb, largest).payload) == 8540
    assert gwlb.from_endpoint(0, udp(sport=1, size=MAX_INNER - 27)) is DropReason.OVERSIZE
    assert gwlb.metrics.drops[DropReason.OVERSIZE] == 1
    assert gwlb.rejects[-1].detail == "8501 bytes"
    assert len(gwlb.flows) == 1


@pytest.mark.parametrize(
    "inner",
    [bytes(IP(src=CLIENT, dst=SERVER, flags="MF") / UDP() / Raw(bytes(64))),
     bytes(IP(src=CLIENT, dst=SERVER, frag=8) / Raw(bytes(64))),
     bytes(IPv6(src="2001:db8::10", dst="2001:db8:1::20") / IPv6ExtHdrFragment(m=1) / UDP())],
    ids=["ipv4-mf", "ipv4-offset", "ipv6-fragment-header"],
)
def test_fragments_are_dropped(gwlb: Gwlb, inner: bytes) -> None:
    assert gwlb.from_endpoint(0, inner) is DropReason.FRAGMENT
    assert gwlb.metrics.drops[DropReason.FRAGMENT] == 1
    assert len(gwlb.flows) == 0 and gwlb.metrics.total.processed_packets == 0


@pytest.mark.parametrize("inner", [b"", b"\x00" * 40, b"\x45" + bytes(10)], ids=["empty", "version-0", "short"])
def test_non_ip_is_dropped(gwlb: Gwlb, inner: bytes) -> None:
    assert gwlb.from_endpoint(0, inner) is DropReason.NOT_IP
    assert gwlb.rejects[-1].source == "e-a"


def test_mid_stream_tcp_of_unknown_flow_is_rejected(gwlb: Gwlb) -> None:
    assert gwlb.from_endpoint(0, tcp("PA")) is DropReason.REJECTED_TCP
    assert gwlb.metrics.total.rejected_flows_tcp == 1
    assert gwlb.metrics.drops[DropReason.REJECTED_TCP] == 1
    assert gwlb.metrics.total.new_flows == 0


@pytest.mark.parametrize("endpoint", [0, 1])
def test_echo_is_delivered_to_the_flows_endpoint(gwlb: Gwlb, endpoint: int) -> None:
    request = send(gwlb, tcp("S"), endpoint)
    assert back(gwlb, request) == Delivery(endpoint, tcp("S"))
    answer = send(gwlb, tcp("SA", src=SERVER, dst=CLIENT), endpoint)
    assert back(gwlb, answer) == Delivery(endpoint, tcp("SA", src=SERVER, dst=CLIENT))
    (flow,) = gwlb.flows.flows()
    assert flow.packets == [1, 1] and flow.returned == [1, 1]
    assert gwlb.mismatches == {}
    assert not gwlb.metrics.drops


def test_target_may_rewrite_the_inner_packet(gwlb: Gwlb) -> None:
    sent = send(gwlb, udp())
    natted = udp(src="100.64.0.1")
    assert back(gwlb, sent, with_header(sent, sent_header(sent), natted)) == Delivery(0, natted)
    assert gwlb.mismatches == {}


def test_return_keeps_the_flow_alive(gwlb: Gwlb, clock: Clock) -> None:
    sent = send(gwlb, udp())
    for _ in range(3):
        clock.now[0] += 100
        assert isinstance(back(gwlb, sent), Delivery)


def stale_by_idle(gwlb: Gwlb, sent: Encapsulated, clock: Clock) -> tuple[bytes, str | None, int | None, int]:
    clock.now[0] += TIMEOUTS.other_idle_s + 1
    return sent.payload, None, None, geneve.GENEVE_PORT


def changed_meta(**fields: int) -> Callable[[Gwlb, Encapsulated, Clock], tuple[bytes, str | None, int | None, int]]:
    def mutate(gwlb: Gwlb, sent: Encapsulated, clock: Clock) -> tuple[bytes, str | None, int | None, int]:
        meta = replace(sent_meta(sent), **fields)
        return with_header(sent, geneve.aws_header(geneve.PROTO_IPV4, meta)), None, None, geneve.GENEVE_PORT
    return mutate


def payload_only(make: Callable[[Encapsulated], bytes]) -> Callable[..., tuple[bytes, str | None, int | None, int]]:
    def mutate(gwlb: Gwlb, sent: Encapsulated, clock: Clock) -> tuple[bytes, str | None, int | None, int]:
        return make(sent), None, None, geneve.GENEVE_PORT
    return mutate


RETURN_DROPS = {
    "dst_port": (DropReason.DST_PORT,
                 lambda g, s, c: (s.payload, None, s.source_port, s.source_port)),
    "unknown_source": (DropReason.UNKNOWN_SOURCE,
                       lambda g, s, c: (s.payload, "10.0.9.9", None, geneve.GENEVE_PORT)),
    "malformed_version": (DropReason.MALFORMED,
                          payload_only(lambda s: bytes([s.payload[0] | 0x40]) + s.payload[1:])),
    "malformed_optlen": (DropReason.MALFORMED,
                         payload_only(lambda s: bytes([0x3F]) + s.payload[1:])),
    "malformed_short": (DropReason.MALFORMED, payload_only(lambda s: s.payload[:7])),
    "missing_options": (DropReason.MISSING_OPTIONS, payload_only(
        lambda s: with_header(s, geneve.GeneveHeader(geneve.PROTO_IPV4, options=sent_meta(s).options()[:2])))),
    "no_options": (DropReason.MISSING_OPTIONS, payload_only(
        lambda s: with_header(s, geneve.GeneveHeader(geneve.PROTO_IPV4)))),
    "unknown_cookie": (DropReason.UNKNOWN_COOKIE, changed_meta(cookie=0xDEADBEEF)),
    "stale_cookie": (DropReason.STALE_COOKIE, stale_by_idle),
    "eni_mismatch": (DropReason.ENI_MISMATCH, changed_meta(eni_id=ENDPOINTS[1].eni_id)),
    "attachment_mismatch": (DropReason.ATTACHMENT_MISMATCH, changed_meta(attachment_id=ENDPOINTS[1].attachment_id)),
    "wrong_target": (DropReason.WRONG_TARGET,
                     lambda g, s, c: (s.payload, TARGETS[1 - s.target].address, None, geneve.GENEVE_PORT)),
    "empty": (DropReason.EMPTY, payload_only(lambda s: s.payload[:40])),
    "oversize": (DropReason.OVERSIZE, payload_only(lambda s: s.payload[:40] + udp(size=MAX_INNER - 27))),
}


@pytest.mark.parametrize("case", RETURN_DROPS)
def test_return_drop_reasons(gwlb: Gwlb, clock: Clock, case: str) -> None:
    reason, mutate = RETURN_DROPS[case]
    sent = send(gwlb, udp())
    assert sent.target in (0, 1)
    payload, source, source_port, dest_port = mutate(gwlb, sent, clock)
    result = back(gwlb, sent, payload, source=source, source_port=source_port, dest_port=dest_port)
    assert result is reason
    assert gwlb.metrics.drops == {reason: 1}
    assert gwlb.metrics.total.processed_packets == 1
    reject = gwlb.rejects[-1]
    assert reject.reason is reason and reject.detail
    assert reject.source == (source or TARGETS[sent.target].address)
    assert gwlb.mismatches == {}


def test_recorded_header_is_the_returned_one(gwlb: Gwlb) -> None:
    sent = send(gwlb, udp())
    meta = replace(sent_meta(sent), eni_id=1)
    returned = with_header(sent, geneve.aws_header(geneve.PROTO_IPV4, meta))
    assert back(gwlb, sent, returned) is DropReason.ENI_MISMATCH
    assert gwlb.rejects[-1].header == returned[:40].hex()
    assert gwlb.rejects[-1].detail == "ENI vpce-00000000000000001"


def test_old_cookie_after_reused_five_tuple_is_stale(gwlb: Gwlb) -> None:
    first = send(gwlb, tcp("S"))
    send(gwlb, tcp("R"))
    second = send(gwlb, tcp("S"))
    assert sent_meta(first).cookie != sent_meta(second).cookie
    assert back(gwlb, first) is DropReason.STALE_COOKIE
    assert isinstance(back(gwlb, second), Delivery)


def test_strict_mode_drops_a_changed_source_port(make_gwlb: MakeGwlb) -> None:
    gwlb = make_gwlb(strict=True)
    sent = send(gwlb, udp())
    assert back(gwlb, sent, source_port=geneve.GENEVE_PORT) is DropReason.SOURCE_PORT
    assert gwlb.metrics.drops == {DropReason.SOURCE_PORT: 1}
    assert isinstance(back(gwlb, sent), Delivery)


def test_lenient_mode_counts_a_changed_source_port_and_delivers(gwlb: Gwlb) -> None:
    sent = send(gwlb, udp())
    assert back(gwlb, sent, source_port=geneve.GENEVE_PORT) == Delivery(0, udp())
    assert back(gwlb, sent) == Delivery(0, udp())
    assert gwlb.metrics.source_port_changed == 1
    assert not gwlb.metrics.drops


def test_reserved_bit_is_delivered_and_recorded_as_mismatch(gwlb: Gwlb) -> None:
    sent = send(gwlb, udp())
    altered = with_header(sent, replace(sent_header(sent), reserved_byte=0x01))
    for _ in range(2):
        assert back(gwlb, sent, altered) == Delivery(0, udp())
    cookie = sent_meta(sent).cookie
    assert set(gwlb.mismatches) == {cookie}
    mismatch = gwlb.mismatches[cookie]
    assert (mismatch.expected, mismatch.observed, mismatch.count) == (sent.payload[:40].hex(), altered[:40].hex(), 2)


def test_extra_non_critical_option_is_delivered_and_recorded(gwlb: Gwlb) -> None:
    sent = send(gwlb, udp())
    header = sent_header(sent)
    extra = geneve.GeneveOption(0x0200, 0x01, b"\x00\x00\x00\x2a")
    altered = with_header(sent, replace(header, options=(*header.options, extra)))
    assert back(gwlb, sent, altered) == Delivery(0, udp())
    assert gwlb.mismatches[sent_meta(sent).cookie].observed == altered[:48].hex()


def test_reordered_aws_options_are_delivered_and_recorded(gwlb: Gwlb) -> None:
    sent = send(gwlb, udp())
    header = sent_header(sent)
    altered = with_header(sent, replace(header, options=header.options[::-1]))
    assert back(gwlb, sent, altered) == Delivery(0, udp())
    assert gwlb.mismatches[sent_meta(sent).cookie].count == 1


def test_unknown_critical_option_is_dropped(gwlb: Gwlb) -> None:
    sent = send(gwlb, udp())
    critical = geneve.GeneveOption(0xFFF0, 0x81, b"\x00\x00\x00\x00")
    header = geneve.GeneveHeader.build(geneve.PROTO_IPV4, options=(*sent_meta(sent).options(), critical))
    assert header.critical
    assert back(gwlb, sent, with_header(sent, header)) is DropReason.CRITICAL_OPTION


def test_new_flows_avoid_unhealthy_targets(make_gwlb: MakeGwlb) -> None:
    gwlb = make_gwlb(healthy=(0, 2))
    assert {send(gwlb, udp(sport=p)).target for p in range(1000, 1050)} == {0}
    old = [f.target for f in gwlb.flows.flows()]
    gwlb.set_health(0, False)
    gwlb.set_health(1, True)
    assert {send(gwlb, udp(sport=p)).target for p in range(2000, 2050)} == {1}
    assert {send(gwlb, udp(sport=p)).target for p in range(1000, 1050)} == set(old) == {0}


def test_healthy_targets_share_new_flows(gwlb: Gwlb) -> None:
    assert {send(gwlb, udp(sport=p)).target for p in range(1000, 1100)} == {0, 1}


def test_all_unhealthy_still_assigns_and_pins(make_gwlb: MakeGwlb) -> None:
    gwlb = make_gwlb(healthy=())
    first = {p: send(gwlb, udp(sport=p)).target for p in range(1000, 1060)}
    assert set(first.values()) == {0, 1}
    assert {p: send(gwlb, udp(sport=p)).target for p in first} == first
    gwlb.set_health(0, True)
    assert {p: send(gwlb, udp(sport=p)).target for p in first} == first
    assert gwlb.metrics.total.new_flows == 60


def test_zones_without_cross_zone(gwlb: Gwlb) -> None:
    assert {send(gwlb, udp(sport=p), endpoint=0).target for p in range(1000, 1100)} == {0, 1}
    assert {send(gwlb, udp(sport=p), endpoint=1).target for p in range(1000, 1100)} == {2}


def test_zones_with_cross_zone(make_gwlb: MakeGwlb) -> None:
    gwlb = make_gwlb(cross_zone=True)
    for endpoint in (0, 1):
        assert {send(gwlb, udp(sport=p), endpoint=endpoint).target for p in range(1000, 1100)} == {0, 1, 2}


def test_unhealthy_zone_without_cross_zone_stays_in_zone(make_gwlb: MakeGwlb) -> None:
    gwlb = make_gwlb(healthy=(2,))
    assert {send(gwlb, udp(sport=p), endpoint=0).target for p in range(1000, 1060)} == {0, 1}


def test_cross_zone_prefers_healthy_targets_anywhere(make_gwlb: MakeGwlb) -> None:
    gwlb = make_gwlb(healthy=(2,), cross_zone=True)
    assert {send(gwlb, udp(sport=p), endpoint=0).target for p in range(1000, 1060)} == {2}


def test_metrics(gwlb: Gwlb) -> None:
    syn, synack, ack = tcp("S"), tcp("SA", src=SERVER, dst=CLIENT), tcp("A")
    sent = [send(gwlb, syn), send(gwlb, synack), send(gwlb, ack)]
    for packet in sent:
        assert isinstance(back(gwlb, packet), Delivery)
    send(gwlb, udp())
    gwlb.from_endpoint(0, tcp("A", sport=1))
    gwlb.from_endpoint(0, udp(size=MAX_INNER))
    back(gwlb, sent[0], dest_port=1)
    metrics = gwlb.metrics
    assert metrics.total.new_flows == 2
    assert metrics.total.processed_packets == 7
    assert metrics.total.processed_bytes == 2 * (len(syn) + len(synack) + len(ack)) + len(udp())
    assert metrics.total.rejected_flows_tcp == 1
    assert metrics.drops == {DropReason.REJECTED_TCP: 1, DropReason.OVERSIZE: 1, DropReason.DST_PORT: 1}
    assert [r.reason for r in gwlb.rejects] == [DropReason.REJECTED_TCP, DropReason.OVERSIZE, DropReason.DST_PORT]


def test_reject_log_is_bounded(gwlb: Gwlb, clock: Clock) -> None:
    for i in range(300):
        clock.now[0] = float(i)
        gwlb.from_endpoint(0, b"")
    assert len(gwlb.rejects) == 256
    assert gwlb.rejects[0].at == 44.0
    assert gwlb.metrics.drops[DropReason.NOT_IP] == 300


def test_icmp_flow_round_trip(gwlb: Gwlb) -> None:
    ping = bytes(IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=1, seq=1))
    pong = bytes(IP(src=SERVER, dst=CLIENT) / ICMP(type=0, id=1, seq=1))
    there, reply = send(gwlb, ping), send(gwlb, pong)
    assert there.payload[:40] == reply.payload[:40]
    assert back(gwlb, reply) == Delivery(0, pong)


def test_metrics_per_zone_and_peaks(gwlb: Gwlb, clock) -> None:
    send(gwlb, udp(sport=1))
    send(gwlb, udp(sport=2), endpoint=1)
    send(gwlb, udp(sport=1))
    clock.now[0] += 1
    send(gwlb, udp(sport=1))
    zones = gwlb.metrics.zones
    assert (zones["a"].processed_packets, zones["b"].processed_packets) == (3, 1)
    assert (zones["a"].new_flows, zones["b"].new_flows) == (1, 1)
    assert gwlb.metrics.total.peak_packets_per_second == 3
    assert gwlb.metrics.total.aws()["PeakPacketsPerSecond"] == 3


def test_prometheus_text() -> None:
    from harness.emulator.metrics import prometheus

    text = prometheus({"NewFlowCount": 2}, {"az1": {"NewFlowCount": 2}}, {"oversize": 1})
    assert "# TYPE gwlb_NewFlowCount gauge\ngwlb_NewFlowCount 2\n" in text
    assert 'gwlb_NewFlowCount{availability_zone="az1"} 2' in text
    assert 'gwlb_dropped_packets{reason="oversize"} 1' in text


LATE = EndpointSpec("e-late", eni_id=0x0CCCCDDDDEEEEFFFF, attachment_id=0x0102030405060708, zone="a")


def test_endpoint_added_while_flows_run(gwlb: Gwlb) -> None:
    """A late endpoint carries its own ENI and attachment IDs; running flows keep header, cookie and target."""
    before = [send(gwlb, udp()) for _ in range(3)]
    index = gwlb.add_endpoint(LATE)
    assert index == len(ENDPOINTS)
    late = send(gwlb, udp(), endpoint=index)
    meta = sent_meta(late)
    assert (meta.eni_id, meta.attachment_id) == (LATE.eni_id, LATE.attachment_id)
    assert meta.cookie != sent_meta(before[0]).cookie
    assert back(gwlb, late) == Delivery(index, udp())
    after = send(gwlb, udp())
    assert (after.payload, after.target, after.source_port) == (before[0].payload, before[0].target, before[0].source_port)
    assert back(gwlb, after) == Delivery(0, udp())
    assert len(gwlb.flows) == 2
    assert gwlb.metrics.zones["a"].new_flows == 2


def test_endpoint_in_a_new_zone(make_gwlb: MakeGwlb) -> None:
    gwlb = make_gwlb(cross_zone=True)
    send(gwlb, udp())
    index = gwlb.add_endpoint(replace(LATE, zone="c"))
    for _ in range(2):
        assert isinstance(back(gwlb, send(gwlb, udp(sport=7), endpoint=index)), Delivery)
    assert gwlb.metrics.zones["c"].processed_packets == 4
    assert gwlb.metrics.zones["a"].processed_packets == 1
    assert gwlb.metrics.total.processed_packets == 5


@pytest.mark.parametrize(("spec", "message"), [
    (replace(LATE, eni_id=ENDPOINTS[1].eni_id), "is already endpoint e-b"),
    (replace(LATE, name="e-a"), "an endpoint named 'e-a' exists already"),
], ids=["eni", "name"])
def test_endpoint_conflicts_are_refused(gwlb: Gwlb, spec: EndpointSpec, message: str) -> None:
    with pytest.raises(EndpointConflict, match=message):
        gwlb.add_endpoint(spec)
    assert gwlb.endpoints == ENDPOINTS
