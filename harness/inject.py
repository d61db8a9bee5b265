"""Malformed or unusual GENEVE sent straight to an appliance target from the GWLB's namespace.

A GWLB never sends these, but an appliance is a security device: it must survive them. Each
injected packet carries a marker in its inner payload, so any reply that echoes it is recognised
whatever ports or header the appliance used. Runs inside the `gwlb` node; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import sys
import time
from collections.abc import Callable

from harness import geneve
from harness.inet import PacketError, build_ipv4_udp, parse_ipv4_udp
from harness.profiles import DEFAULT, PROFILES, Direction, Profile

INJECT_PORT = 40999
MARKER = b"GWLB-CONFORMANCE-INJECTED"
INNER_PORTS = (47999, 5002)


def _inner(nonce: bytes, src: str, dst: str, ports: tuple[int, int] = INNER_PORTS) -> bytes:
    """A valid inner IPv4/UDP packet (consumer to server, unless told otherwise) carrying the marker."""
    body = MARKER + nonce
    udp = struct.pack("!HHHH", *ports, 8 + len(body), 0) + body
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + udp


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _options(profile: Profile, eni: int, direction: Direction = Direction.FROM_INITIATOR) -> tuple[geneve.GeneveOption, ...]:
    """The profile's three options, as its GWLB would send them on a packet going `direction`."""
    cookie = profile.cookie_word(0x0C0FFEE0, direction)
    return geneve.AwsMetadata(eni, 0x0123456789ABCDEF, cookie).options(profile.layout)


def _gwlb_header(profile: Profile, eni: int, **changes: object) -> bytes:
    fields: dict[str, object] = {"protocol": geneve.PROTO_IPV4, "options": _options(profile, eni)}
    fields.update(changes)
    return geneve.GeneveHeader(**fields).encode()  # type: ignore[arg-type]


def bad_version(profile: Profile, eni: int, inner: bytes) -> bytes:
    header = bytearray(_gwlb_header(profile, eni))
    header[0] = (header[0] & 0x3F) | 0x40
    return bytes(header) + inner


def truncated(profile: Profile, eni: int, inner: bytes) -> bytes:
    return _gwlb_header(profile, eni)[:6]


def optlen_overrun(profile: Profile, eni: int, inner: bytes) -> bytes:
    header = bytearray(_gwlb_header(profile, eni))
    header[0] = (header[0] & 0xC0) | 0x3F
    return bytes(header) + inner[:20]


def option_overrun(profile: Profile, eni: int, inner: bytes) -> bytes:
    header = bytearray(_gwlb_header(profile, eni))
    header[8 + 3] = (header[8 + 3] & 0xE0) | 0x1F
    return bytes(header) + inner


def critical_option(profile: Profile, eni: int, inner: bytes) -> bytes:
    unknown = geneve.GeneveOption(0xFFF0, 0x81, b"\x00" * 4)
    return _gwlb_header(profile, eni, options=(*_options(profile, eni), unknown), critical=True) + inner


def wrong_protocol(profile: Profile, eni: int, inner: bytes) -> bytes:
    return _gwlb_header(profile, eni, protocol=0x6558) + inner


def empty_inner(profile: Profile, eni: int, inner: bytes) -> bytes:
    return _gwlb_header(profile, eni)


def extra_option(profile: Profile, eni: int, inner: bytes) -> bytes:
    """Valid, with an unknown non-critical option after the GWLB's three (RFC 8926: to be echoed)."""
    unknown = geneve.GeneveOption(0xFFF0, 0x01, b"\x5a" * 4)
    return _gwlb_header(profile, eni, options=(*_options(profile, eni), unknown)) + inner


def random_bytes(profile: Profile, eni: int, inner: bytes) -> bytes:
    return os.urandom(random.randint(0, 600))


KINDS: dict[str, Callable[[Profile, int, bytes], bytes]] = {
    "bad-version": bad_version,
    "truncated": truncated,
    "optlen-overrun": optlen_overrun,
    "option-overrun": option_overrun,
    "critical-option": critical_option,
    "wrong-protocol": wrong_protocol,
    "empty-inner": empty_inner,
    "random-bytes": random_bytes,
}
VALID_KINDS: dict[str, Callable[[Profile, int, bytes], bytes]] = {"extra-option": extra_option}


class Injector:
    def __init__(self, source: str, target: str) -> None:
        self.source, self.target = socket.inet_aton(source), socket.inet_aton(target)
        self.address = (target, 0)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        self.rx.setblocking(False)

    def send(self, payload: bytes) -> None:
        self.tx.sendto(build_ipv4_udp(self.source, self.target, INJECT_PORT, geneve.GENEVE_PORT, payload), self.address)

    def echoed(self, nonce: bytes, listen_s: float) -> list[bytes]:
        """The UDP payloads from the target that carried this run's marker back."""
        deadline, replies = time.monotonic() + listen_s, []
        while time.monotonic() < deadline:
            try:
                packet = self.rx.recv(65536)
            except BlockingIOError:
                time.sleep(0.005)
                continue
            try:
                datagram = parse_ipv4_udp(packet)
            except PacketError:
                continue
            if datagram.src == self.target and MARKER + nonce in datagram.payload:
                replies.append(datagram.payload)
        return replies


def inject(source: str, target: str, profile: Profile, eni: int, inner: tuple[str, str], kind: str, count: int,
           listen_s: float) -> dict[str, object]:
    injector = Injector(source, target)
    nonce = os.urandom(4).hex().encode()
    inner_packet = _inner(nonce, *inner)
    packet = {**KINDS, **VALID_KINDS}[kind](profile, eni, inner_packet)
    for _ in range(count):
        injector.send(packet)
    replies = injector.echoed(nonce, listen_s)
    header_length = max(0, len(packet) - len(inner_packet))
    return {
        "kind": kind,
        "sent": count,
        "echoed": len(replies),
        "sent_header": packet[:header_length].hex(),
        "echoed_headers": sorted({reply[:header_length].hex() for reply in replies}),
    }


def both_directions(source: str, target: str, profile: Profile, eni: int, inner_ends: tuple[str, str], pairs: int,
                    listen_s: float) -> dict[str, object]:
    """One flow's packets from both of its ends, alternating, sent faster than an appliance
    forwards them, so that each direction's packets arrive while the other's are in flight.
    Under a profile whose cookie word carries the direction, an appliance that caches one header
    per flow returns some of them with the other direction's header; this counts those."""
    injector = Injector(source, target)
    nonce = os.urandom(4).hex().encode()
    client, server = inner_ends
    ends = {b"F": (Direction.FROM_INITIATOR, client, server, INNER_PORTS),
            b"R": (Direction.TO_INITIATOR, server, client, INNER_PORTS[::-1])}
    headers = {tag: _gwlb_header(profile, eni, options=_options(profile, eni, direction))
               for tag, (direction, *_) in ends.items()}
    packets = [headers[tag] + _inner(nonce + tag + b"%04d" % index, src, dst, ports)
               for index in range(pairs) for tag, (_, src, dst, ports) in ends.items()]
    for packet in packets:
        injector.send(packet)
    replies = injector.echoed(nonce, listen_s)
    swapped, changed, example = header_errors(replies, nonce, headers)
    return {
        "kind": "both-directions",
        "sent": len(packets),
        "echoed": len(replies),
        "wrong_direction": swapped,
        "changed": changed,
        "expected_header": example[0].hex(),
        "observed_header": example[1].hex(),
    }


def header_errors(replies: list[bytes], nonce: bytes, headers: dict[bytes, bytes]) -> tuple[int, int, tuple[bytes, bytes]]:
    """Of replies to `both_directions` (tagged F or R after the marker), how many carry the other
    direction's header, how many a header matching neither, and the first such (expected, observed)."""
    swapped, changed, example = 0, 0, (b"", b"")
    for reply in replies:
        tag = reply[reply.index(MARKER + nonce) + len(MARKER + nonce):][:1]
        expected, other = headers[tag], headers[b"R" if tag == b"F" else b"F"]
        if reply.startswith(expected):
            continue
        swapped += reply.startswith(other)
        changed += not reply.startswith(other)
        example = example if example[0] else (expected, reply[:len(expected)])
    return swapped, changed, example


def flood(source: str, target: str, profile: Profile, eni: int, inner_ends: tuple[str, str], duration_s: float,
          rate_pps: int) -> dict[str, object]:
    """Malformed packets of every kind at `rate_pps` (paced every 10 ms) for `duration_s`."""
    injector = Injector(source, target)
    nonce = os.urandom(4).hex().encode()
    inner = _inner(nonce, *inner_ends)
    packets = [build(profile, eni, inner) for build in KINDS.values() for _ in range(8)]
    per_tick = max(1, rate_pps // 100)
    sent, start = 0, time.monotonic()
    end = start + duration_s
    while (now := time.monotonic()) < end:
        due = int((now - start) * rate_pps) + per_tick
        while sent < due:
            try:
                injector.send(packets[sent % len(packets)])
            except OSError:
                pass
            sent += 1
        time.sleep(0.01)
    return {"kind": "flood", "sent": sent, "duration_s": duration_s, "pps": round(sent / duration_s)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.inject", description=__doc__)
    parser.add_argument("--source", required=True, help="the GWLB's address")
    parser.add_argument("--target", required=True)
    parser.add_argument("--eni", type=lambda text: int(text, 0), required=True, help="ENI ID to put in option 1")
    parser.add_argument("--profile", choices=list(PROFILES), default=DEFAULT.name, help="whose option class and cookie word")
    parser.add_argument("--inner", nargs=2, metavar=("SRC", "DST"), required=True, help="inner packet's addresses")
    parser.add_argument("--kind", choices=[*KINDS, *VALID_KINDS, "both-directions", "flood"], required=True)
    parser.add_argument("--count", type=int, default=3, help="packets to send (both-directions: pairs)")
    parser.add_argument("--listen", type=float, default=0.5, help="seconds to wait for echoes")
    parser.add_argument("--duration", type=float, default=3.0, help="flood duration")
    parser.add_argument("--rate", type=int, default=10000, help="flood packets per second")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.kind == "flood":
        result = flood(args.source, args.target, profile, args.eni, tuple(args.inner), args.duration, args.rate)
    elif args.kind == "both-directions":
        result = both_directions(args.source, args.target, profile, args.eni, tuple(args.inner), args.count, args.listen)
    else:
        result = inject(args.source, args.target, profile, args.eni, tuple(args.inner), args.kind, args.count,
                        args.listen)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
