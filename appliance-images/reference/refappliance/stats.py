"""Counters the health endpoint reports, and the named reasons a packet can be dropped.

The data path is the only writer; the health thread only reads (a stale-by-one-packet snapshot is
fine), so no lock is needed.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum


class Drop(StrEnum):
    """Why a packet was not passed on; every drop is counted under one of these."""

    TRUNCATED = "truncated"
    BAD_VERSION = "bad-version"
    OPTLEN_OVERRUN = "optlen-overrun"
    OPTION_OVERRUN = "option-overrun"
    BAD_PROTOCOL = "bad-protocol"
    UNKNOWN_CRITICAL_OPTION = "unknown-critical-option"
    MISSING_ENI_OPTION = "missing-eni-option"
    BAD_ENI_OPTION = "bad-eni-option"
    EMPTY_PAYLOAD = "empty-payload"
    BAD_INNER = "bad-inner"
    TUNNEL_ERROR = "tunnel-error"
    TUN_WRITE_ERROR = "tun-write-error"
    NO_FLOW = "no-flow"
    SEND_ERROR = "send-error"
    FAULT = "fault"


class PacketDropped(Exception):
    """A packet cannot be processed; `reason` says why."""

    def __init__(self, reason: Drop, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else str(reason))


class Stats:
    """Packet, byte and drop counters of one appliance process."""

    def __init__(self) -> None:
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.drops: Counter[str] = Counter()

    def received(self, size: int) -> None:
        self.packets_in += 1
        self.bytes_in += size

    def sent(self, size: int) -> None:
        self.packets_out += 1
        self.bytes_out += size

    def dropped(self, reason: Drop) -> None:
        self.drops[reason.value] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "drops": dict(self.drops),
        }
