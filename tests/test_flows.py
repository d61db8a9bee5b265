"""harness.flows: symmetric flow keys and the flow table's rules, with a fake clock and seeded RNG.

Packets are built with scapy and parsed by harness.inet, as on the data path, so each test
reads as the traffic it describes: client 192.0.2.10 talks to server 198.51.100.20.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet

from harness.flows import (
    SOURCE_PORT_BASE, SOURCE_PORT_SPAN, FlowKey, FlowTable, Outcome, Timeouts,
)
from harness.inet import PROTO_TCP, InnerFlow, parse_inner
from harness.topology import Stickiness

CLIENT, SERVER, OTHER = "192.0.2.10", "198.51.100.20", "198.51.100.99"
CLIENT6, SERVER6 = "2001:db8::10", "2001:db8:1::20"
TIMEOUTS = Timeouts(tcp_idle_s=350, other_idle_s=120)


def parsed(packet: Packet) -> InnerFlow:
    return parse_inner(bytes(packet))


def tcp(src: str = CLIENT, dst: str = SERVER, sport: int = 40000, dport: int = 443, flags: str = "A") -> InnerFlow:
    layer = IP if ipaddress.ip_address(src).version == 4 else IPv6
    return parsed(layer(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags))


def udp(src: str = CLIENT, dst: str = SERVER, sport: int = 40000, dport: int = 53) -> InnerFlow:
    layer = IP if ipaddress.ip_address(src).version == 4 else IPv6
    return parsed(layer(src=src, dst=dst) / UDP(sport=sport, dport=dport))


def icmp(src: str = CLIENT, dst: str = SERVER) -> InnerFlow:
    return parsed(IP(src=src, dst=dst) / ICMP())


def reverse(flow: InnerFlow) -> InnerFlow:
    return InnerFlow(flow.version, flow.protocol, flow.dst, flow.src, flow.dport, flow.sport,
                     flow.tcp_flags, flow.fragment)


class Clock:
    def __init__(self) -> None:
        self.now = [1000.0]

    def __call__(self) -> float:
        return self.now[0]

    def advance(self, seconds: float) -> None:
        self.now[0] += seconds


class Chooser:
    """A choose_target that records its calls and returns whatever target is current."""

    def __init__(self, target: int = 0) -> None:
        self.target = target
        self.calls: list[FlowKey] = []

    def __call__(self, key: FlowKey) -> int:
        self.calls.append(key)
        return self.target


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_table(clock: Clock) -> Callable[..., FlowTable]:
    def make(stickiness: Stickiness = Stickiness.FIVE_TUPLE, rng: random.Random | None = None) -> FlowTable:
        return FlowTable(stickiness, TIMEOUTS, clock, rng or random.Random(1234))
    return make


SAMPLES = {
    "tcp4": tcp(flags="S"), "udp4": udp(), "icmp4": icmp(),
    "tcp6": tcp(CLIENT6, SERVER6, flags="S"), "udp6": udp(CLIENT6, SERVER6),
}


@pytest.mark.parametrize("stickiness", list(Stickiness))
@pytest.mark.parametrize("name", SAMPLES)
def test_key_is_symmetric(stickiness: Stickiness, name: str) -> None:
    flow = SAMPLES[name]
    forward, backward = FlowKey.of(0, flow, stickiness), FlowKey.of(0, reverse(flow), stickiness)
    assert forward == backward
    assert forward.digest() == backward.digest()


def test_five_tuple_uses_ports() -> None:
    assert FlowKey.of(0, udp(sport=1), Stickiness.FIVE_TUPLE) != FlowKey.of(0, udp(sport=2), Stickiness.FIVE_TUPLE)
    assert FlowKey.of(0, udp(dport=1), Stickiness.FIVE_TUPLE) != FlowKey.of(0, udp(dport=2), Stickiness.FIVE_TUPLE)


def test_five_tuple_does_not_mix_mirrored_ports() -> None:
    a = udp(CLIENT, SERVER, sport=1000, dport=2000)
    b = udp(CLIENT, SERVER, sport=2000, dport=1000)
    assert FlowKey.of(0, a, Stickiness.FIVE_TUPLE) != FlowKey.of(0, b, Stickiness.FIVE_TUPLE)


@pytest.mark.parametrize("make", [tcp, udp], ids=["tcp", "udp"])
def test_three_tuple_ignores_ports_but_not_protocol(make: Callable[..., InnerFlow]) -> None:
    keys = {FlowKey.of(0, make(sport=s, dport=d), Stickiness.THREE_TUPLE) for s, d in [(1, 2), (3, 4), (5, 443)]}
    assert len(keys) == 1
    assert keys != {FlowKey.of(0, (udp if make is tcp else tcp)(), Stickiness.THREE_TUPLE)}


def test_two_tuple_ignores_protocol_and_ports() -> None:
    flows = [tcp(sport=1), udp(sport=2, dport=3), icmp(), reverse(tcp(sport=9, dport=10))]
    assert len({FlowKey.of(0, f, Stickiness.TWO_TUPLE) for f in flows}) == 1


@pytest.mark.parametrize("stickiness", list(Stickiness))
@pytest.mark.parametrize("protocol", [1, 47, 50, 132], ids=["icmp", "gre", "esp", "sctp"])
def test_non_tcp_udp_never_uses_ports(stickiness: Stickiness, protocol: int) -> None:
    def flow(sport: int, dport: int) -> InnerFlow:
        return InnerFlow(4, protocol, b"\xc0\x00\x02\x0a", b"\xc6\x33\x64\x14", sport, dport, 0, False)
    assert FlowKey.of(0, flow(1, 2), stickiness) == FlowKey.of(0, flow(3, 4), stickiness)
    assert FlowKey.of(0, flow(1, 2), stickiness).low[1] == 0


@pytest.mark.parametrize("stickiness", list(Stickiness))
def test_different_endpoints_different_keys(stickiness: Stickiness) -> None:
    flow = tcp(flags="S")
    assert FlowKey.of(0, flow, stickiness) != FlowKey.of(1, flow, stickiness)


def test_different_hosts_different_keys() -> None:
    for stickiness in Stickiness:
        assert FlowKey.of(0, udp(dst=SERVER), stickiness) != FlowKey.of(0, udp(dst=OTHER), stickiness)


def test_both_directions_resolve_to_one_flow(make_table: Callable[..., FlowTable]) -> None:
    table, chooser = make_table(), Chooser(target=2)
    outcome, flow = table.classify(0, tcp(flags="S"), chooser)
    assert outcome is Outcome.NEW and flow is not None
    outcome_back, back = table.classify(0, reverse(tcp(flags="SA")), chooser)
    assert outcome_back is Outcome.EXISTING
    assert back is flow
    assert (flow.target, flow.cookie, flow.source_port) == (2, back.cookie, back.source_port)
    table.classify(0, tcp(flags="A"), chooser)
    assert flow.packets == [2, 1]
    assert flow.initiator == ipaddress.ip_address(CLIENT).packed
    assert len(chooser.calls) == 1
    assert len(table) == 1
    assert table.by_cookie(flow.cookie) is flow


def test_source_port_is_in_range_and_a_function_of_the_flow(make_table: Callable[..., FlowTable]) -> None:
    one, two = make_table(rng=random.Random(1)), make_table(rng=random.Random(2))
    ports = set()
    for sport in range(40000, 40050):
        _, a = one.classify(0, udp(sport=sport), Chooser())
        _, b = two.classify(0, reverse(udp(sport=sport)), Chooser())
        assert a is not None and b is not None
        assert a.source_port == b.source_port
        assert SOURCE_PORT_BASE <= a.source_port < SOURCE_PORT_BASE + SOURCE_PORT_SPAN
        ports.add(a.source_port)
    assert len(ports) > 40


def test_thousand_flows_get_distinct_cookies(make_table: Callable[..., FlowTable]) -> None:
    table, chooser = make_table(), Chooser()
    base = udp()
    flows = []
    for i in range(1000):
        inner = InnerFlow(4, base.protocol, base.src, base.dst, 20000 + i, 53, 0, False)
        outcome, flow = table.classify(0, inner, chooser)
        assert outcome is Outcome.NEW and flow is not None
        flows.append(flow)
    assert len({f.cookie for f in flows}) == 1000
    assert len(table) == 1000
    assert all(table.by_cookie(f.cookie) is f for f in flows)


class ScriptedRandom(random.Random):
    """Hands out scripted cookies, to force collisions."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = list(values)

    def getrandbits(self, k: int) -> int:
        return self.values.pop(0)


def test_cookie_in_use_or_retired_is_never_reissued(make_table: Callable[..., FlowTable], clock: Clock) -> None:
    table = make_table(rng=ScriptedRandom([5, 5, 7, 5, 7, 9]))
    _, first = table.classify(0, udp(sport=1), Chooser())
    _, second = table.classify(0, udp(sport=2), Chooser())
    assert first is not None and second is not None
    assert (first.cookie, second.cookie) == (5, 7)
    clock.advance(121)
    assert table.expire() == 2
    _, third = table.classify(0, udp(sport=3), Chooser())
    assert third is not None and third.cookie == 9


def test_idle_expiry_tcp_versus_other(make_table: Callable[..., FlowTable], clock: Clock) -> None:
    table, chooser = make_table(), Chooser()
    _, tcp_flow = table.classify(0, tcp(flags="S"), chooser)
    _, udp_flow = table.classify(0, udp(), chooser)
    _, icmp_flow = table.classify(0, icmp(), chooser)
    assert tcp_flow is not None and udp_flow is not None and icmp_flow is not None
    clock.advance(120)
    assert table.expire() == 0
    clock.advance(0.5)
    assert table.expire() == 2
    assert table.by_cookie(udp_flow.cookie) is None and table.is_retired(udp_flow.cookie)
    assert table.is_retired(icmp_flow.cookie)
    assert table.by_cookie(tcp_flow.cookie) is tcp_flow
    clock.advance(229.5)
    assert table.expire() == 0
    clock.advance(0.5)
    assert table.by_cookie(tcp_flow.cookie) is None
    assert table.is_retired(tcp_flow.cookie)
    assert len(table) == 0


def test_traffic_keeps_a_flow_alive(make_table: Callable[..., FlowTable], clock: Clock) -> None:
    table, chooser = make_table(), Chooser()
    _, flow = table.classify(0, udp(), chooser)
    assert flow is not None
    for _ in range(5):
        clock.advance(100)
        outcome, again = table.classify(0, reverse(udp()), chooser)
        assert outcome is Outcome.EXISTING and again is flow
    clock.advance(100)
    table.touch(flow)
    clock.advance(100)
    assert table.by_cookie(flow.cookie) is flow


def test_expired_udp_flow_comes_back_with_a_new_cookie(make_table: Callable[..., FlowTable], clock: Clock) -> None:
    table, chooser = make_table(), Chooser()
    _, old = table.classify(0, udp(), chooser)
    clock.advance(121)
    outcome, new = table.classify(0, udp(), chooser)
    assert old is not None and new is not None
    assert outcome is Outcome.NEW
    assert new.cookie != old.cookie
    assert table.is_retired(old.cookie)
    assert new.source_port == old.source_port


def test_expired_tcp_flow_rejects_mid_stream_packets(make_table: Callable[..., FlowTable], clock: Clock) -> None:
    table, chooser = make_table(), Chooser()
    _, old = table.classify(0, tcp(flags="S"), chooser)
    assert old is not None
    clock.advance(351)
    assert table.classify(0, tcp(flags="PA"), chooser) == (Outcome.REJECTED_TCP, None)
    assert table.is_retired(old.cookie)
    outcome, new = table.classify(0, tcp(flags="S"), chooser)
    assert outcome is Outcome.NEW and new is not None and new.cookie != old.cookie


def open_connection(table: FlowTable, chooser: Chooser) -> int:
    _, flow = table.classify(0, tcp(flags="S"), chooser)
    table.classify(0, reverse(tcp(flags="SA")), chooser)
    table.classify(0, tcp(flags="A"), chooser)
    assert flow is not None and not flow.closed
    return flow.cookie


def test_reused_five_tuple_after_rst_gets_new_cookie(make_table: Callable[..., FlowTable]) -> None:
    table, chooser = make_table(), Chooser()
    old = open_connection(table, chooser)
    _, flow = table.classify(0, reverse(tcp(flags="R")), chooser)
    assert flow is not None and flow.closed
    outcome, same = table.classify(0, tcp(flags="A"), chooser)
    assert outcome is Outcome.EXISTING and same is flow
    assert not table.is_retired(old)
    outcome, new = table.classify(0, tcp(flags="S"), chooser)
    assert outcome is Outcome.NEW and new is not None
    assert new.cookie != old
    assert table.is_retired(old) and table.by_cookie(old) is None
    assert table.by_cookie(new.cookie) is new and not new.closed


def test_reused_five_tuple_after_fin_from_both_sides_gets_new_cookie(make_table: Callable[..., FlowTable]) -> None:
    table, chooser = make_table(), Chooser()
    old = open_connection(table, chooser)
    _, flow = table.classify(0, tcp(flags="FA"), chooser)
    assert flow is not None and not flow.closed
    outcome, same = table.classify(0, tcp(flags="S"), chooser)
    assert outcome is Outcome.EXISTING and same is flow
    table.classify(0, reverse(tcp(flags="FA")), chooser)
    assert flow.closed
    table.classify(0, tcp(flags="A"), chooser)
    outcome, new = table.classify(0, tcp(flags="S"), chooser)
    assert outcome is Outcome.NEW and new is not None and new.cookie != old
    assert table.is_retired(old)
    assert len(chooser.calls) == 2


def test_fin_twice_from_one_side_does_not_close(make_table: Callable[..., FlowTable]) -> None:
    table, chooser = make_table(), Chooser()
    open_connection(table, chooser)
    table.classify(0, tcp(flags="FA"), chooser)
    _, flow = table.classify(0, tcp(flags="FA"), chooser)
    assert flow is not None and not flow.closed


def test_closed_flow_keeps_cookie_on_syn_ack(make_table: Callable[..., FlowTable]) -> None:
    table, chooser = make_table(), Chooser()
    old = open_connection(table, chooser)
    table.classify(0, tcp(flags="R"), chooser)
    outcome, flow = table.classify(0, reverse(tcp(flags="SA")), chooser)
    assert outcome is Outcome.EXISTING and flow is not None and flow.cookie == old


@pytest.mark.parametrize("flags", ["A", "PA", "SA", "FA", "R", "RA"])
def test_non_syn_tcp_of_unknown_flow_is_rejected(make_table: Callable[..., FlowTable], flags: str) -> None:
    table, chooser = make_table(), Chooser()
    assert table.classify(0, tcp(flags=flags), chooser) == (Outcome.REJECTED_TCP, None)
    assert len(table) == 0
    assert chooser.calls == []


@pytest.mark.parametrize("stickiness", [Stickiness.THREE_TUPLE, Stickiness.TWO_TUPLE])
def test_non_syn_tcp_joins_existing_coarse_flow(make_table: Callable[..., FlowTable], stickiness: Stickiness) -> None:
    table, chooser = make_table(stickiness), Chooser()
    _, flow = table.classify(0, tcp(sport=1, flags="S"), chooser)
    outcome, same = table.classify(0, tcp(sport=2, flags="A"), chooser)
    assert outcome is Outcome.EXISTING and same is flow


def test_udp_and_icmp_of_unknown_flow_are_new(make_table: Callable[..., FlowTable]) -> None:
    table, chooser = make_table(), Chooser()
    assert table.classify(0, udp(), chooser)[0] is Outcome.NEW
    assert table.classify(0, icmp(), chooser)[0] is Outcome.NEW


def test_assignment_stays_when_choice_changes(make_table: Callable[..., FlowTable]) -> None:
    table, chooser = make_table(), Chooser(target=0)
    _, flow = table.classify(0, tcp(flags="S"), chooser)
    chooser.target = 1
    for inner in (reverse(tcp(flags="SA")), tcp(flags="A"), tcp(flags="S")):
        _, same = table.classify(0, inner, chooser)
        assert same is flow and same.target == 0
    _, other = table.classify(0, tcp(sport=40001, flags="S"), chooser)
    assert other is not None and other.target == 1


def test_reassign_moves_target_and_keeps_cookie(make_table: Callable[..., FlowTable]) -> None:
    table = make_table()
    _, flow = table.classify(0, udp(), Chooser(target=0))
    assert flow is not None
    cookie, port = flow.cookie, flow.source_port
    table.reassign([flow], Chooser(target=3))
    assert (flow.target, flow.cookie, flow.source_port) == (3, cookie, port)
    assert table.by_cookie(cookie) is flow


def test_same_flow_on_two_endpoints_is_two_flows(make_table: Callable[..., FlowTable]) -> None:
    table, chooser = make_table(), Chooser()
    _, a = table.classify(0, udp(), chooser)
    _, b = table.classify(1, udp(), chooser)
    assert a is not None and b is not None and a is not b and a.cookie != b.cookie
    assert (a.key.endpoint, b.key.endpoint) == (0, 1)


def test_tcp_key_protocol_drives_timeout_in_three_tuple(make_table: Callable[..., FlowTable], clock: Clock) -> None:
    table = make_table(Stickiness.THREE_TUPLE)
    _, flow = table.classify(0, tcp(flags="S"), Chooser())
    assert flow is not None and flow.key.protocol == PROTO_TCP
    clock.advance(200)
    assert table.by_cookie(flow.cookie) is flow


@pytest.mark.parametrize("stickiness", [Stickiness.THREE_TUPLE, Stickiness.TWO_TUPLE])
def test_coarse_flow_keeps_cookie_when_one_connection_closes(make_table: Callable[..., FlowTable],
                                                             stickiness: Stickiness) -> None:
    table, chooser = make_table(stickiness), Chooser()
    _, flow = table.classify(0, tcp(sport=1, flags="S"), chooser)
    table.classify(0, tcp(sport=1, flags="FA"), chooser)
    table.classify(0, reverse(tcp(sport=1, flags="FA")), chooser)
    assert flow is not None and flow.closed
    outcome, same = table.classify(0, tcp(sport=2, flags="S"), chooser)
    assert outcome is Outcome.EXISTING and same is flow
    assert not table.is_retired(flow.cookie)
