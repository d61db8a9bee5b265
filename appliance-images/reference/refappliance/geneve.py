"""GENEVE (RFC 8926) as far as an appliance needs it: strict parsing and the outer reply header.

Parsing validates the base header and every option's bounds, rejects unknown critical options and
extracts the endpoint (ENI) option of AWS's layout, which Tencent's GWLB uses under its own class;
the header bytes are kept exactly as received because the reply must echo them. Building covers
only the outer IPv4 + UDP header the raw socket sends.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .stats import Drop, PacketDropped

PORT = 6081
BASE_LEN = 8
PROTOCOLS = {0x0800: 4, 0x86DD: 6}
GWLB_CLASSES = (0x0108, 0x0167)
"""AWS's and Tencent's option classes: each sends ENI (type 1), attachment (2) and cookie (3)."""
ENI_OPTIONS = {(klass, 1) for klass in GWLB_CLASSES}
COOKIE_OPTIONS = {(klass, 3) for klass in GWLB_CLASSES}
KNOWN_OPTIONS = ENI_OPTIONS | {(klass, 2) for klass in GWLB_CLASSES} | COOKIE_OPTIONS
CRITICAL = 0x80
OUTER_TTL = 64
DONT_FRAGMENT = 0x4000
_OUTER = struct.Struct("!BBHHHBBH4s4sHHHH")


@dataclass(frozen=True)
class Option:
    offset: int
    klass: int
    type: int
    value: bytes


@dataclass(frozen=True)
class Geneve:
    """A parsed GENEVE packet: `header` is the base header plus options, byte for byte."""

    header: bytes
    protocol: int
    eni: int
    payload: bytes


def options(header: bytes) -> Iterator[Option]:
    """Yield the options of a GENEVE header whose OptLen is already known to fit."""
    end = BASE_LEN + (header[0] & 0x3F) * 4
    offset = BASE_LEN
    while offset < end:
        if offset + 4 > end:
            raise PacketDropped(Drop.OPTION_OVERRUN, f"option header at {offset} passes {end}")
        klass, type_, length = struct.unpack_from("!HBB", header, offset)
        value_end = offset + 4 + (length & 0x1F) * 4
        if value_end > end:
            raise PacketDropped(Drop.OPTION_OVERRUN, f"option at {offset} ends at {value_end} > {end}")
        yield Option(offset, klass, type_, bytes(header[offset + 4:value_end]))
        offset = value_end


def parse(data: bytes) -> Geneve:
    """Validate a GENEVE packet strictly; raise PacketDropped with the reason when it is not valid."""
    if len(data) < BASE_LEN:
        raise PacketDropped(Drop.TRUNCATED, f"{len(data)} bytes")
    if data[0] >> 6:
        raise PacketDropped(Drop.BAD_VERSION, f"version {data[0] >> 6}")
    end = BASE_LEN + (data[0] & 0x3F) * 4
    if end > len(data):
        raise PacketDropped(Drop.OPTLEN_OVERRUN, f"options end at {end}, packet has {len(data)}")
    protocol = int.from_bytes(data[2:4], "big")
    if protocol not in PROTOCOLS:
        raise PacketDropped(Drop.BAD_PROTOCOL, f"protocol 0x{protocol:04x}")
    eni = None
    for option in options(data[:end]):
        key = (option.klass, option.type)
        if option.type & CRITICAL and key not in KNOWN_OPTIONS:
            raise PacketDropped(Drop.UNKNOWN_CRITICAL_OPTION, f"class 0x{option.klass:04x} type 0x{option.type:02x}")
        if key in ENI_OPTIONS and eni is None:
            if len(option.value) != 8:
                raise PacketDropped(Drop.BAD_ENI_OPTION, f"{len(option.value)}-byte value")
            eni = int.from_bytes(option.value, "big")
    if eni is None:
        raise PacketDropped(Drop.MISSING_ENI_OPTION)
    if end == len(data):
        raise PacketDropped(Drop.EMPTY_PAYLOAD)
    if data[end] >> 4 != PROTOCOLS[protocol]:
        raise PacketDropped(Drop.BAD_INNER, f"IPv{data[end] >> 4} packet under protocol 0x{protocol:04x}")
    return Geneve(bytes(data[:end]), protocol, eni, bytes(data[end:]))


def outer_header(*, src: str, dst: str, sport: int, dport: int, payload_len: int) -> bytes:
    """Outer IPv4 + UDP header (DF, TTL 64, UDP checksum 0); the kernel fills IP ID and checksum."""
    udp_len = 8 + payload_len
    return _OUTER.pack(
        0x45, 0, 20 + udp_len, 0, DONT_FRAGMENT, OUTER_TTL, socket.IPPROTO_UDP, 0,
        socket.inet_aton(src), socket.inet_aton(dst), sport, dport, udp_len, 0,
    )
