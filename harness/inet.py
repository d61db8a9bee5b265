"""Just enough IPv4/IPv6/TCP/UDP parsing and building for the emulator's data path.

The emulator needs an inner packet's flow identity (addresses, protocol, ports, TCP flags,
fragment bit) and must build and parse the outer IPv4/UDP header of GENEVE packets. scapy is far
too slow per packet, so this is struct-based; tests check it against scapy.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

_IPV6_EXTENSION_HEADERS = frozenset({0, 43, 60})
_IPV6_FRAGMENT = 44


class PacketError(ValueError):
    """An inner or outer packet is too short or not IP."""


@dataclass(frozen=True, slots=True)
class InnerFlow:
    """The flow identity of one inner packet, as seen in the direction it travels."""

    version: int
    protocol: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    tcp_flags: int
    fragment: bool
    icmp_error: bool = False

    @property
    def is_tcp_syn(self) -> bool:
        return self.protocol == PROTO_TCP and self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN


_ICMP_ERRORS = {4: (PROTO_ICMP, frozenset({3, 11, 12})), 6: (PROTO_ICMPV6, frozenset({1, 2, 3, 4}))}


def parse_inner(packet: bytes) -> InnerFlow:
    """Flow identity of a bare IPv4 or IPv6 packet; raises PacketError if it is not one.

    An ICMP error takes the identity of the packet it quotes, seen in the error's direction, so
    it travels in that flow's tunnel as AWS does (`icmp_error` is then set).
    """
    flow = _parse_ip(packet)
    error_protocol, error_types = _ICMP_ERRORS[flow.version]
    offset = len(packet) - flow.payload_length
    if flow.protocol == error_protocol and not flow.fragment and len(packet) > offset and packet[offset] in error_types:
        try:
            quoted = _parse_ip(packet[offset + 8 :]).flow
        except PacketError:
            return flow.flow
        return InnerFlow(quoted.version, quoted.protocol, quoted.dst, quoted.src, quoted.dport, quoted.sport, 0, False, True)
    return flow.flow


@dataclass(frozen=True, slots=True)
class _Parsed:
    flow: InnerFlow
    payload_length: int

    @property
    def version(self) -> int:
        return self.flow.version

    @property
    def protocol(self) -> int:
        return self.flow.protocol

    @property
    def fragment(self) -> bool:
        return self.flow.fragment


def _parse_ip(packet: bytes) -> _Parsed:
    if not packet:
        raise PacketError("empty packet")
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            raise PacketError(f"IPv4 header needs 20 bytes, packet has {len(packet)}")
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or ihl > len(packet):
            raise PacketError(f"IPv4 header length {ihl} is invalid for a {len(packet)}-byte packet")
        flags_frag = struct.unpack_from("!H", packet, 6)[0]
        fragment = bool(flags_frag & 0x2000) or bool(flags_frag & 0x1FFF)
        protocol = packet[9]
        src, dst, offset = packet[12:16], packet[16:20], ihl
    elif version == 6:
        if len(packet) < 40:
            raise PacketError(f"IPv6 header needs 40 bytes, packet has {len(packet)}")
        protocol, offset, fragment = packet[6], 40, False
        while protocol in _IPV6_EXTENSION_HEADERS and len(packet) >= offset + 8:
            protocol, offset = packet[offset], offset + 8 + packet[offset + 1] * 8
        if protocol == _IPV6_FRAGMENT:
            fragment = True
        src, dst = packet[8:24], packet[24:40]
    else:
        raise PacketError(f"IP version {version} is neither 4 nor 6")
    sport = dport = flags = 0
    if protocol in (PROTO_TCP, PROTO_UDP) and not fragment and len(packet) >= offset + 4:
        sport, dport = struct.unpack_from("!HH", packet, offset)
        if protocol == PROTO_TCP and len(packet) >= offset + 14:
            flags = packet[offset + 13]
    flow = InnerFlow(version, protocol, bytes(src), bytes(dst), sport, dport, flags, fragment)
    return _Parsed(flow, len(packet) - offset)


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """An outer IPv4/UDP packet as received on a raw socket."""

    src: bytes
    dst: bytes
    sport: int
    dport: int
    payload: bytes


def parse_ipv4_udp(packet: bytes) -> UdpDatagram:
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != PROTO_UDP:
        raise PacketError("not an IPv4/UDP packet")
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + 8:
        raise PacketError(f"IPv4 header length {ihl} leaves no room for UDP in {len(packet)} bytes")
    sport, dport, length = struct.unpack_from("!HHH", packet, ihl)
    end = min(len(packet), ihl + max(length, 8))
    return UdpDatagram(packet[12:16], packet[16:20], sport, dport, packet[ihl + 8 : end])


_OUTER_IPV4 = struct.Struct("!BBHHHBBH4s4sHHHH")


def build_ipv4_udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, ttl: int = 64) -> bytes:
    """Outer IPv4 (DF set, checksum left to the kernel) + UDP with checksum 0 (allowed for IPv4)."""
    total = 28 + len(payload)
    header = _OUTER_IPV4.pack(0x45, 0, total, 0, 0x4000, ttl, PROTO_UDP, 0, src, dst, sport, dport, 8 + len(payload), 0)
    return header + payload
