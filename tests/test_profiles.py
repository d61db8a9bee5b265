"""harness.profiles and the emulator under each profile: what differs between aws and tencent.

    c1 ──► gwlb ══ class 0x0108, cookie word = cookie               ══► target   (aws)
    c1 ──► gwlb ══ class 0x0167, cookie word = direction(3) | cookie(29) ══► target   (tencent)
    s1 ──► gwlb ══ same flow, other direction bits                   ══► same target

No sockets: inner packets are scapy-built bytes, the clock and RNG are injected. Most checks use
the pure-Python Gwlb; tests/test_fastpath.py proves the compiled cache equal to it under tencent too.
"""

from __future__ import annotations

import ipaddress
import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP

from harness import geneve, inject, profiles
from harness.emulator import fastpath
from harness.emulator.core import Delivery, DropReason, Encapsulated, EndpointSpec, Gwlb, Settings, TargetSpec
from harness.emulator.targets import TargetPool
from harness.flows import Timeouts
from harness.profiles import AWS, TENCENT, AllUnhealthy, Direction, Profile, Stickiness
from harness.report.render_html import _geneve_fields

ENDPOINTS = [EndpointSpec("e-a", eni_id=0x02B8EE1D4DB0C51C4, attachment_id=0x1122334455667788, zone="a")]
TARGETS = [TargetSpec("t1", "10.0.1.10", "a"), TargetSpec("t2", "10.0.1.11", "a"), TargetSpec("t3", "10.0.1.12", "a")]
CLIENT, SERVER = "192.0.2.10", "198.51.100.20"
TIMEOUTS = Timeouts(tcp_idle_s=350, other_idle_s=120)
TENCENT_SETTINGS = Settings(Stickiness.THREE_TUPLE, TIMEOUTS, profile="tencent")


def tencent(healthy: tuple[int, ...] = (0, 1, 2), seed: int = 7) -> Gwlb:
    gwlb = Gwlb(ENDPOINTS, TARGETS, TENCENT_SETTINGS, lambda: 10.0, random.Random(seed))
    for target in healthy:
        gwlb.set_health(target, True)
    return gwlb


def udp(sport: int = 40000, *, reply: bool = False) -> bytes:
    if reply:
        return bytes(IP(src=SERVER, dst=CLIENT) / UDP(sport=53, dport=sport))
    return bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=sport, dport=53))


def send(gwlb: Gwlb, inner: bytes) -> Encapsulated:
    result = gwlb.from_endpoint(0, inner)
    assert isinstance(result, Encapsulated), result
    return result


def back(gwlb: Gwlb, sent: Encapsulated, payload: bytes | None = None) -> Delivery | DropReason:
    address = ipaddress.IPv4Address(TARGETS[sent.target].address).packed
    return gwlb.from_target(address, sent.source_port, geneve.GENEVE_PORT, sent.payload if payload is None else payload)


def test_profiles_by_name() -> None:
    assert profiles.get_profile("aws") is AWS and profiles.get_profile("tencent") is TENCENT
    assert profiles.DEFAULT is AWS
    with pytest.raises(ValueError, match=r"unknown profile 'gcp'; expected one of: aws, tencent"):
        profiles.get_profile("gcp")


def test_what_differs() -> None:
    assert (AWS.layout.opt_class, TENCENT.layout.opt_class) == (0x0108, 0x0167)
    assert (AWS.cookie_bits, TENCENT.cookie_bits) == (32, 29)
    assert (AWS.directional, TENCENT.directional) == (False, True)
    assert (AWS.forced_stickiness, TENCENT.forced_stickiness) == (None, Stickiness.THREE_TUPLE)
    assert (AWS.all_unhealthy, TENCENT.all_unhealthy) == (AllUnhealthy.PIN_RANDOM, AllUnhealthy.SPREAD_ALL)


def test_cookie_word_encoding() -> None:
    cookie = 0x1ABCDEF1
    assert TENCENT.cookie_word(cookie, Direction.FROM_INITIATOR) == 0x1ABCDEF1
    assert TENCENT.cookie_word(cookie, Direction.TO_INITIATOR) == 0x3ABCDEF1
    assert TENCENT.split_cookie_word(0x3ABCDEF1) == (1, cookie)
    assert TENCENT.split_cookie_word(0xFFFFFFFF) == (7, (1 << 29) - 1)
    assert AWS.cookie_word(0xDEADBEEF, Direction.TO_INITIATOR) == 0xDEADBEEF
    assert AWS.split_cookie_word(0xDEADBEEF) == (0, 0xDEADBEEF)
    with pytest.raises(ValueError, match="profile tencent: cookie 0x20000000 does not fit in 29 bits"):
        TENCENT.cookie_word(1 << 29, Direction.FROM_INITIATOR)


def test_header_bytes_per_direction() -> None:
    """Tencent: the same 40-byte layout under class 0x0167; only the cookie word's top 3 bits
    differ between directions. AWS: one header for both."""
    eni, attachment, cookie = 0x02B8EE1D4DB0C51C4, 0x1122334455667788, 0x00C0FFEE
    forward = TENCENT.header(geneve.PROTO_IPV4, eni, attachment, cookie, Direction.FROM_INITIATOR)
    reverse = TENCENT.header(geneve.PROTO_IPV4, eni, attachment, cookie, Direction.TO_INITIATOR)
    assert forward == bytes.fromhex(
        "08000800" "00000000" "01670102" "2b8ee1d4db0c51c4" "01670202" "1122334455667788"
        "01670301" "00c0ffee")
    assert reverse == forward[:36] + bytes.fromhex("20c0ffee")
    assert TENCENT.metadata(geneve.GeneveHeader.decode(reverse)) == geneve.AwsMetadata(eni, attachment, 0x20C0FFEE)
    aws = [AWS.header(geneve.PROTO_IPV4, eni, attachment, cookie, d) for d in Direction]
    assert aws[0] == aws[1] == forward.replace(b"\x01\x67", b"\x01\x08")
    with pytest.raises(geneve.GeneveError, match=r"Tencent ENI ID option \(class 0x0167, type 1\): expected in the header"):
        TENCENT.metadata(geneve.GeneveHeader.decode(aws[0]))


def test_profile_checks_its_own_fields() -> None:
    layout = geneve.OptionLayout("X", 0x0999)
    with pytest.raises(ValueError, match="direction value 8 does not fit in 3 bits"):
        Profile("x", layout, 3, (0, 8), None, AllUnhealthy.PIN_RANDOM)
    with pytest.raises(ValueError, match="the two directions need distinct values"):
        Profile("x", layout, 3, (1, 1), None, AllUnhealthy.PIN_RANDOM)


def test_forced_stickiness() -> None:
    assert TENCENT.stickiness(None) is TENCENT.stickiness(Stickiness.THREE_TUPLE) is Stickiness.THREE_TUPLE
    assert AWS.stickiness(None) is Stickiness.FIVE_TUPLE and AWS.stickiness(Stickiness.TWO_TUPLE) is Stickiness.TWO_TUPLE
    with pytest.raises(ValueError, match="profile tencent always hashes source_ip_dest_ip_proto; five_tuple is not available"):
        Settings(Stickiness.FIVE_TUPLE, TIMEOUTS, profile="tencent")


def test_tencent_hashes_the_symmetric_three_tuple() -> None:
    """Flows between two hosts on any ports are one flow: one target, one cookie, one source port;
    the reply direction carries the same cookie under the other direction bits."""
    gwlb = tencent()
    sent = [send(gwlb, udp(sport)) for sport in range(40000, 40020)]
    reply = send(gwlb, udp(40000, reply=True))
    assert len(gwlb.flows) == 1
    (flow,) = gwlb.flows.flows()
    assert {(s.target, s.source_port) for s in [*sent, reply]} == {(flow.target, flow.source_port)}
    assert flow.cookie < 1 << 29
    assert {s.payload[:40] for s in sent} == {flow.header}
    assert reply.payload[:40] == flow.reply_header == flow.header[:36] + (1 << 29 | flow.cookie).to_bytes(4, "big")
    icmp = send(gwlb, bytes(IP(src=CLIENT, dst=SERVER) / ICMP()))
    tcp = send(gwlb, bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=443, dport=40000, flags="S")))
    assert len(gwlb.flows) == 3 and icmp.payload[36:40] != tcp.payload[36:40]


def test_echo_of_each_packets_own_header_is_delivered() -> None:
    gwlb = tencent()
    forward, reverse = send(gwlb, udp()), send(gwlb, udp(reply=True))
    assert back(gwlb, forward) == Delivery(0, udp())
    assert back(gwlb, reverse) == Delivery(0, udp(reply=True))
    (flow,) = gwlb.flows.flows()
    assert (flow.returned, gwlb.mismatches) == ([1, 1], {})


@pytest.mark.parametrize("reply", [False, True], ids=["from-initiator", "to-initiator"])
def test_the_other_directions_header_is_a_named_drop(reply: bool) -> None:
    """An appliance that caches one header per flow echoes the wrong direction's bits."""
    gwlb = tencent()
    forward, reverse = send(gwlb, udp()), send(gwlb, udp(reply=True))
    mine, other = (reverse, forward) if reply else (forward, reverse)
    swapped = other.payload[:40] + mine.payload[40:]
    assert back(gwlb, mine, swapped) is DropReason.DIRECTION
    reject = gwlb.rejects[-1]
    expected = 1 if reply else 0
    assert reject.detail == (f"direction field {1 - expected} on a packet "
                             f"{'to' if reply else 'from'} initiator, expected {expected}")
    assert reject.header == swapped[:40].hex()
    assert gwlb.metrics.drops[DropReason.DIRECTION] == 1


def test_aws_options_are_not_tencents() -> None:
    gwlb = tencent()
    sent = send(gwlb, udp())
    aws = AWS.header(geneve.PROTO_IPV4, ENDPOINTS[0].eni_id, ENDPOINTS[0].attachment_id, 1, Direction.FROM_INITIATOR)
    assert back(gwlb, sent, aws + sent.payload[40:]) is DropReason.MISSING_OPTIONS
    options = geneve.GeneveHeader.decode(sent.payload).options

    def with_critical(opt_class: int) -> bytes:
        flagged = (*options, geneve.GeneveOption(opt_class, 0x83, bytes(4)))
        return geneve.GeneveHeader.build(geneve.PROTO_IPV4, options=flagged).encode() + sent.payload[40:]

    assert back(gwlb, sent, with_critical(0x0108)) is DropReason.CRITICAL_OPTION
    assert isinstance(back(gwlb, sent, with_critical(0x0167)), Delivery), "a known class's critical option"
    assert len(gwlb.mismatches) == 1


def test_all_unhealthy_spreads_over_all_targets() -> None:
    """Tencent treats all targets as healthy then (the same hash, every time); AWS pins each new
    flow to a random one."""
    gwlb = tencent(healthy=())
    hosts = [f"192.0.2.{i}" for i in range(10, 70)]
    packets = [bytes(IP(src=h, dst=SERVER) / UDP(sport=1, dport=53)) for h in hosts]
    first = [send(gwlb, p).target for p in packets]
    assert set(first) == {0, 1, 2}
    again = tencent(healthy=(), seed=8)
    assert [send(again, p).target for p in packets] == first
    digests = [3, 4, 5, 3]
    spread = TargetPool(TARGETS, range(3), False, lambda: 0.0, random.Random(1), AllUnhealthy.SPREAD_ALL)
    assert [spread.choose("a", d) for d in digests] == [0, 1, 2, 0]
    pinned = [TargetPool(TARGETS, range(3), False, lambda: 0.0, random.Random(seed), AllUnhealthy.PIN_RANDOM).choose("a", 3)
              for seed in range(20)]
    assert set(pinned) == {0, 1, 2}


@pytest.mark.skipif(not fastpath.AVAILABLE, reason=f"the fast path is not built: {fastpath.IMPORT_ERROR}")
def test_the_compiled_cache_replays_each_directions_header() -> None:
    """Hits carry the header of the packet's own direction; a reply carrying the other direction's
    misses the cache and Python drops it as `direction`."""
    gwlb = fastpath.CachedGwlb(ENDPOINTS, TARGETS, TENCENT_SETTINGS, lambda: 10.0, random.Random(7))
    for target in range(3):
        gwlb.set_health(target, True)
    first = gwlb.from_endpoint(0, udp())
    (flow,) = gwlb.flows.flows()
    assert isinstance(first, Encapsulated) and first.payload[:40] == flow.header != flow.reply_header
    hits = gwlb.cache.stats()["forwarded"]
    request, reply = gwlb.from_endpoint(0, udp()), gwlb.from_endpoint(0, udp(reply=True))
    assert gwlb.cache.stats()["forwarded"] == hits + 2
    assert isinstance(request, Encapsulated) and request.payload[:40] == flow.header
    assert isinstance(reply, Encapsulated) and reply.payload[:40] == flow.reply_header
    source = ipaddress.IPv4Address(TARGETS[flow.target].address).packed
    assert isinstance(gwlb.from_target(source, request.source_port, geneve.GENEVE_PORT, reply.payload), Delivery)
    assert gwlb.cache.stats()["delivered"] == 1
    swapped = flow.header + reply.payload[40:]
    assert gwlb.from_target(source, request.source_port, geneve.GENEVE_PORT, swapped) is DropReason.DIRECTION
    assert gwlb.cache.stats()["return_misses"] == 1


def test_injected_headers_carry_the_profiles_options() -> None:
    for profile in (AWS, TENCENT):
        packet = inject.extra_option(profile, ENDPOINTS[0].eni_id, b"")
        header = geneve.GeneveHeader.decode(packet)
        assert [o.opt_class for o in header.options] == [profile.layout.opt_class] * 3 + [0xFFF0]
        assert profile.metadata(header).eni_id == ENDPOINTS[0].eni_id
        assert profile.split_cookie_word(profile.metadata(header).cookie)[0] == 0


def test_report_names_tencents_options() -> None:
    header = TENCENT.header(geneve.PROTO_IPV4, 1, 2, 3, Direction.TO_INITIATOR)
    labels = _geneve_fields(header)
    assert "option class 0x0167 flow cookie: header, 1 words of data" in labels
    assert labels[-1] == "flow cookie"


def test_both_directions_replies_are_told_apart_by_header() -> None:
    nonce = b"0a1b2c3d"
    headers = {tag: TENCENT.header(geneve.PROTO_IPV4, 1, 2, 3, direction)
               for tag, direction in ((b"F", Direction.FROM_INITIATOR), (b"R", Direction.TO_INITIATOR))}
    body = {tag: b"inner" + inject.MARKER + nonce + tag + b"0001" for tag in headers}
    stripped = geneve.GeneveHeader(protocol=geneve.PROTO_IPV4).encode()
    replies = [headers[b"F"] + body[b"F"], headers[b"R"] + body[b"R"], headers[b"F"] + body[b"R"],
               headers[b"R"] + body[b"F"], stripped + body[b"R"]]
    swapped, changed, example = inject.header_errors(replies, nonce, headers)
    assert (swapped, changed) == (2, 1)
    assert example == (headers[b"R"], headers[b"F"])
