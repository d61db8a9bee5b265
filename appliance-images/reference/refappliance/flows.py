"""Flow keys and the flow cache that lets the return path find the header to echo.

A key is symmetric (both directions of a flow map to it) and scoped to one GWLB endpoint, so
overlapping consumer address ranges of different endpoints never share an entry. Every packet from
the GWLB replaces the cached header, so a reused 5-tuple carrying a new cookie is echoed correctly.

Within a key, headers are kept per sender (the inner source address): a GWLB whose cookie word
carries the direction (Tencent) sends each direction of a flow its own header, and a reply must
echo the one its packet arrived with, even while the other direction's packets are in flight. A
packet whose sender brought no header (a NAT appliance's return traffic) gets the latest one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from .stats import Drop, PacketDropped

PORTED = {6, 17}
IPV6_EXTENSIONS = {0, 43, 60}
IPV4_FRAGMENT = 0x3FFF

Endpoint = tuple[bytes, int]


class FlowKey(NamedTuple):
    eni: int
    protocol: int
    low: Endpoint
    high: Endpoint


@dataclass(frozen=True)
class FlowEntry:
    """What the reply for a flow needs: the GENEVE header, the GWLB's address and port, our address."""

    header: bytes
    gwlb: tuple[str, int]
    local: str
    sender: bytes = b""


def _ports(packet: bytes, offset: int, protocol: int) -> tuple[int, int]:
    if protocol in PORTED and len(packet) >= offset + 4:
        return int.from_bytes(packet[offset:offset + 2], "big"), int.from_bytes(packet[offset + 2:offset + 4], "big")
    return 0, 0


def sender(packet: bytes) -> bytes:
    """The inner source address of a packet `flow_key` accepted."""
    return bytes(packet[12:16] if packet[0] >> 4 == 4 else packet[8:24])


def flow_key(eni: int, packet: bytes) -> FlowKey:
    """Symmetric key of an inner IPv4/IPv6 packet; ports only for unfragmented TCP and UDP."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20 and 20 <= (packet[0] & 0x0F) * 4 <= len(packet):
        protocol = packet[9]
        src, dst = packet[12:16], packet[16:20]
        fragment = int.from_bytes(packet[6:8], "big") & IPV4_FRAGMENT
        sport, dport = (0, 0) if fragment else _ports(packet, (packet[0] & 0x0F) * 4, protocol)
    elif version == 6 and len(packet) >= 40:
        protocol, offset = packet[6], 40
        while protocol in IPV6_EXTENSIONS and len(packet) >= offset + 8:
            protocol, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
        src, dst = packet[8:24], packet[24:40]
        sport, dport = _ports(packet, offset, protocol)
    else:
        raise PacketDropped(Drop.BAD_INNER, f"not an IPv4/IPv6 packet ({len(packet)} bytes, version {version})")
    a, b = (bytes(src), sport), (bytes(dst), dport)
    return FlowKey(eni, protocol, *sorted((a, b)))


class FlowCache:
    """Flow entries in least-recently-used order, expired after `timeout` idle seconds."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._entries: OrderedDict[FlowKey, tuple[float, dict[bytes, FlowEntry]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def update(self, key: FlowKey, entry: FlowEntry, *, refresh: bool = True) -> FlowEntry:
        """Store `entry` for a packet from the GWLB, under its sender; `refresh=False` keeps the
        sender's live entry."""
        senders = self._live(key) or {}
        current = senders.get(entry.sender)
        if current is not None and not refresh:
            return current
        senders.pop(entry.sender, None)
        senders[entry.sender] = entry
        self._entries[key] = (self._clock(), senders)
        self._entries.move_to_end(key)
        return entry

    def get(self, key: FlowKey, sender: bytes = b"") -> FlowEntry | None:
        """The live entry of `sender` for `key`, else the key's latest one (marking it used);
        None when the flow is unknown or idle."""
        senders = self._live(key)
        if senders is None:
            return None
        self._entries[key] = (self._clock(), senders)
        self._entries.move_to_end(key)
        return senders.get(sender) or next(reversed(senders.values()))

    def _live(self, key: FlowKey) -> dict[bytes, FlowEntry] | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if self._clock() - found[0] > self.timeout:
            del self._entries[key]
            return None
        return found[1]

    def expire(self) -> int:
        """Forget entries idle for longer than the timeout; return how many."""
        now, expired = self._clock(), 0
        while self._entries:
            key, (seen, _) = next(iter(self._entries.items()))
            if now - seen <= self.timeout:
                break
            del self._entries[key]
            expired += 1
        return expired
