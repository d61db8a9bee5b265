"""harness.inet against scapy: the struct-based parser must read what scapy builds, and scapy must
dissect what the builder writes. scapy is the independent reference; the code under test never
sees a scapy object, only bytes."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.packet import Packet, Raw

from harness.inet import (
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, PacketError,
    UdpDatagram, build_ipv4_udp, parse_inner, parse_ipv4_udp,
)

V4 = ("192.0.2.10", "198.51.100.20")
V6 = ("2001:db8::10", "2001:db8:1::20")


def packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def ip(version: int) -> Packet:
    return IP(src=V4[0], dst=V4[1]) if version == 4 else IPv6(src=V6[0], dst=V6[1])


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize(("layer", "protocol"), [(TCP, PROTO_TCP), (UDP, PROTO_UDP)])
def test_transport_identity(version: int, layer: type[Packet], protocol: int) -> None:
    flow = parse_inner(bytes(ip(version) / layer(sport=40000, dport=443) / Raw(b"payload")))
    src, dst = V4 if version == 4 else V6
    assert (flow.version, flow.protocol) == (version, protocol)
    assert (flow.src, flow.dst) == (packed(src), packed(dst))
    assert (flow.sport, flow.dport) == (40000, 443)
    assert not flow.fragment


@pytest.mark.parametrize(
    ("flags", "value", "syn"),
    [("S", TCP_SYN, True), ("SA", TCP_SYN | TCP_ACK, False), ("A", TCP_ACK, False),
     ("FA", TCP_FIN | TCP_ACK, False), ("R", TCP_RST, False), ("PA", 0x18, False)],
)
@pytest.mark.parametrize("version", [4, 6])
def test_tcp_flags(version: int, flags: str, value: int, syn: bool) -> None:
    flow = parse_inner(bytes(ip(version) / TCP(sport=1, dport=2, flags=flags)))
    assert flow.tcp_flags == value
    assert flow.is_tcp_syn is syn


def test_udp_is_never_a_syn() -> None:
    assert not parse_inner(bytes(ip(4) / UDP() / Raw(bytes([0] * 13 + [TCP_SYN])))).is_tcp_syn


@pytest.mark.parametrize(
    ("packet", "protocol"),
    [(IP(src=V4[0], dst=V4[1]) / ICMP(id=0x1234, seq=7), PROTO_ICMP),
     (IPv6(src=V6[0], dst=V6[1]) / ICMPv6EchoRequest(id=0x1234, seq=7), PROTO_ICMPV6),
     (IP(src=V4[0], dst=V4[1], proto=47) / Raw(b"\x00\x00\x08\x00" * 4), 47)],
    ids=["icmp", "icmpv6", "gre"],
)
def test_other_protocols_have_no_ports(packet: Packet, protocol: int) -> None:
    flow = parse_inner(bytes(packet))
    assert flow.protocol == protocol
    assert (flow.sport, flow.dport, flow.tcp_flags) == (0, 0, 0)
    assert not flow.fragment


@pytest.mark.parametrize(
    ("flags", "frag", "is_fragment"),
    [(0, 0, False), ("DF", 0, False), ("MF", 0, True), (0, 185, True), ("MF", 1, True),
     ("DF+MF", 0, True)],
    ids=["none", "df", "mf-first", "last-offset", "middle", "df-mf"],
)
def test_ipv4_fragment_bits(flags: str | int, frag: int, is_fragment: bool) -> None:
    flow = parse_inner(bytes(IP(src=V4[0], dst=V4[1], flags=flags, frag=frag) / UDP(sport=5, dport=6)))
    assert flow.fragment is is_fragment
    assert (flow.sport, flow.dport) == ((0, 0) if is_fragment else (5, 6))


def test_every_piece_of_a_fragmented_ipv4_datagram_is_a_fragment() -> None:
    pieces = fragment(IP(src=V4[0], dst=V4[1]) / UDP(sport=5, dport=6) / Raw(bytes(3000)), fragsize=1000)
    assert len(pieces) == 4
    flows = [parse_inner(bytes(piece)) for piece in pieces]
    assert all(f.fragment and f.protocol == PROTO_UDP and f.src == packed(V4[0]) for f in flows)


@pytest.mark.parametrize(("offset", "more"), [(0, 1), (100, 1), (100, 0), (0, 0)],
                         ids=["first", "middle", "last", "atomic"])
def test_ipv6_fragment_header(offset: int, more: int) -> None:
    packet = IPv6(src=V6[0], dst=V6[1]) / IPv6ExtHdrFragment(offset=offset, m=more, id=9) / UDP(sport=5, dport=6)
    flow = parse_inner(bytes(packet))
    assert flow.fragment
    assert (flow.sport, flow.dport) == (0, 0)


def test_ipv6_fragment_header_after_other_extension_headers() -> None:
    packet = IPv6(src=V6[0], dst=V6[1]) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(m=1) / TCP()
    assert parse_inner(bytes(packet)).fragment


@pytest.mark.parametrize(
    "extensions",
    [[IPv6ExtHdrHopByHop()], [IPv6ExtHdrDestOpt()], [IPv6ExtHdrRouting()],
     [IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(), IPv6ExtHdrDestOpt()]],
    ids=["hop-by-hop", "dest-opts", "routing", "chain"],
)
def test_ipv6_extension_headers_are_skipped(extensions: list[Packet]) -> None:
    packet: Packet = IPv6(src=V6[0], dst=V6[1])
    for header in extensions:
        packet = packet / header
    flow = parse_inner(bytes(packet / TCP(sport=1234, dport=80, flags="S")))
    assert (flow.protocol, flow.sport, flow.dport, flow.is_tcp_syn) == (PROTO_TCP, 1234, 80, True)
    assert not flow.fragment


def test_ipv4_options_are_skipped() -> None:
    packet = IP(src=V4[0], dst=V4[1], options=[b"\x94\x04\x00\x00"]) / TCP(sport=1234, dport=80, flags="S")
    raw = bytes(packet)
    assert raw[0] & 0x0F == 6
    flow = parse_inner(raw)
    assert (flow.sport, flow.dport, flow.is_tcp_syn) == (1234, 80, True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"", "empty"),
     (bytes(IP() / TCP())[:19], "IPv4 header needs 20 bytes, packet has 19"),
     (bytes(IPv6() / TCP())[:39], "IPv6 header needs 40 bytes, packet has 39"),
     (b"\x45", "IPv4 header needs 20 bytes, packet has 1"),
     (bytes(40), "IP version 0 is neither 4 nor 6"),
     (b"\xff" * 64, "IP version 15 is neither 4 nor 6"),
     (bytes.fromhex("ffffffffffff0200000000010800") + bytes(IP() / UDP()), "IP version 15"),
     (b"\x50" + bytes(59), "IP version 5 is neither 4 nor 6")],
    ids=["empty", "short-v4", "short-v6", "one-byte", "zeros", "ones", "ethernet-frame", "version-5"],
)
def test_garbage_raises_packet_error(raw: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        parse_inner(raw)


@pytest.mark.parametrize("keep", [20, 21, 23], ids=["no-transport", "one-byte", "three-bytes"])
def test_truncated_transport_has_no_ports(keep: int) -> None:
    flow = parse_inner(bytes(IP(src=V4[0], dst=V4[1]) / TCP(sport=1, dport=2, flags="S"))[:keep])
    assert (flow.protocol, flow.sport, flow.dport, flow.tcp_flags) == (PROTO_TCP, 0, 0, 0)


def test_truncated_tcp_header_has_ports_but_no_flags() -> None:
    flow = parse_inner(bytes(IP(src=V4[0], dst=V4[1]) / TCP(sport=1, dport=2, flags="S"))[:33])
    assert (flow.sport, flow.dport, flow.tcp_flags) == (1, 2, 0)


def test_truncated_ipv6_extension_chain_does_not_raise() -> None:
    raw = bytes(IPv6(src=V6[0], dst=V6[1]) / IPv6ExtHdrHopByHop() / TCP())[:44]
    flow = parse_inner(raw)
    assert (flow.version, flow.sport, flow.dport) == (6, 0, 0)


def test_build_ipv4_udp_dissected_by_scapy() -> None:
    payload = bytes(range(256)) * 3
    raw = build_ipv4_udp(packed("10.0.0.1"), packed("10.0.1.2"), 45678, 6081, payload)
    packet = IP(raw)
    assert len(raw) == 20 + 8 + len(payload)
    assert (packet.version, packet.ihl, packet.tos, packet.len) == (4, 5, 0, len(raw))
    assert (packet.id, str(packet.flags), packet.frag) == (0, "DF", 0)
    assert (packet.ttl, packet.proto, packet.chksum) == (64, PROTO_UDP, 0)
    assert (packet.src, packet.dst) == ("10.0.0.1", "10.0.1.2")
    udp = packet[UDP]
    assert (udp.sport, udp.dport, udp.len, udp.chksum) == (45678, 6081, 8 + len(payload), 0)
    assert bytes(udp.payload) == payload


def test_build_ipv4_udp_ttl_and_empty_payload() -> None:
    packet = IP(build_ipv4_udp(packed("10.0.0.1"), packed("10.0.1.2"), 1, 2, b"", ttl=1))
    assert (packet.ttl, packet.len, packet[UDP].len) == (1, 28, 8)


def test_parse_ipv4_udp_round_trip() -> None:
    payload = b"geneve" * 50
    raw = build_ipv4_udp(packed("10.0.0.1"), packed("10.0.1.2"), 45678, 6081, payload)
    assert parse_ipv4_udp(raw) == UdpDatagram(packed("10.0.0.1"), packed("10.0.1.2"), 45678, 6081, payload)


def test_parse_ipv4_udp_with_ip_options_and_padding() -> None:
    packet = IP(src="10.0.1.2", dst="10.0.0.1", options=[b"\x94\x04\x00\x00"]) / UDP(sport=6081, dport=6081) / Raw(b"abc")
    datagram = parse_ipv4_udp(bytes(packet) + b"\x00" * 5)
    assert (datagram.src, datagram.dst) == (packed("10.0.1.2"), packed("10.0.0.1"))
    assert (datagram.sport, datagram.dport, datagram.payload) == (6081, 6081, b"abc")


@pytest.mark.parametrize(
    "packet",
    [IP() / TCP(), IPv6() / UDP(), IP() / ICMP()],
    ids=["tcp", "ipv6", "icmp"],
)
def test_parse_ipv4_udp_rejects_other_packets(packet: Packet) -> None:
    with pytest.raises(PacketError, match="not an IPv4/UDP packet"):
        parse_ipv4_udp(bytes(packet))


def test_parse_ipv4_udp_rejects_short_packets() -> None:
    with pytest.raises(PacketError):
        parse_ipv4_udp(bytes(IP() / UDP())[:27])


def test_parse_ipv4_udp_options_overrunning_packet_raise_packet_error() -> None:
    raw = bytes(IP(src="10.0.1.2", dst="10.0.0.1", options=[b"\x94\x04\x00\x00"]) / UDP())[:28]
    with pytest.raises(PacketError):
        parse_ipv4_udp(raw)
