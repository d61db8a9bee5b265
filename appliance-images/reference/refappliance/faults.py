"""Named misbehaviours, each applied at one defined point of the data path or the health endpoint.

They turn the correct appliance into the faulty ones that prove the conformance suite can fail.
A fault is a function from the value at its point to a replacement; None means "drop" at the
points that carry packets. Adding a fault means adding one entry to FAULTS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from . import geneve
from .flows import FlowKey, flow_key

JUMBO = 1500
SLOW_FORWARDING_S = 0.002


class Point(Enum):
    INGRESS = "decapsulated inner packet before it is written to the ingress tun (None drops it)"
    REFRESH = "whether a packet from the GWLB may replace the cached header of a live flow"
    HEADER = "GENEVE header (base + options) about to be echoed"
    PORTS = "(source, destination) UDP ports of the reply"
    EGRESS = "complete outer packet about to be sent (None drops it)"
    HEALTH = "HTTP status of the health endpoint"
    FLOW_KEY = "the flow-cache key computed for a packet (both directions)"
    SENDER = "the inner source address under which a flow's header is cached and looked up"
    HEALTH_DELAY = "(packets received so far, seconds to wait before answering a health probe)"
    HEALTH_PROCESS = "whether the health endpoint runs in a separate process that outlives the data path"
    MALFORMED = "the Reaction to a packet from the GWLB that was dropped as invalid"
    NEW_TUNNEL = "whether a tunnel may be created for an endpoint (ENI) seen for the first time"


class Reaction(Enum):
    DROP = "drop"
    CRASH = "crash"
    ECHO = "echo"
    STALL = "stall"


@dataclass(frozen=True)
class Fault:
    name: str
    point: Point
    apply: Callable[[Any], Any]
    help: str


def _strip_options(header: bytes) -> bytes:
    return bytes([header[0] & 0xC0, header[1] & 0xBF]) + header[2:geneve.BASE_LEN]


def _flip_cookie(header: bytes) -> bytes:
    flipped = bytearray(header)
    for option in geneve.options(header):
        if (option.klass, option.type) in geneve.COOKIE_OPTIONS and option.value:
            flipped[option.offset + 4 + len(option.value) - 1] ^= 1
    return bytes(flipped)


def _require_syn() -> Callable[[bytes], bytes | None]:
    """Drop TCP packets of connections whose SYN this appliance has not seen (no mid-stream pickup)."""
    seen: set[FlowKey] = set()

    def check(inner: bytes) -> bytes | None:
        version = inner[0] >> 4
        offset = (inner[0] & 0x0F) * 4 if version == 4 else 40
        protocol = inner[9] if version == 4 else inner[6]
        if protocol != 6 or len(inner) < offset + 14:
            return inner
        key = flow_key(0, inner)
        if inner[offset + 13] & 0x02:
            seen.add(key)
            return inner
        return inner if key in seen else None

    return check


def _slow_under_load(threshold_pps: float = 100.0, delay_s: float = 3.0) -> Callable[[tuple[int, float]], tuple[int, float]]:
    """Answer health probes late while the data path is busy."""
    last = [time.monotonic(), 0]

    def delay(value: tuple[int, float]) -> tuple[int, float]:
        packets, _ = value
        now = time.monotonic()
        rate = (packets - last[1]) / max(now - last[0], 1e-3)
        last[:] = [now, packets]
        return packets, delay_s if rate > threshold_pps else 0.0

    return delay


def _tunnels_at_start(window_s: float = 1.0) -> Callable[[bool], bool]:
    """Allow tunnels only for endpoints first seen within `window_s` of the first one: a handler
    that sets up its per-endpoint interfaces once, when traffic starts, never learns a later one."""
    first: list[float] = []

    def allow(wanted: bool) -> bool:
        now = time.monotonic()
        if not first:
            first.append(now)
        return wanted and now - first[0] <= window_s

    return allow


def _slow_forwarding(delay_s: float = SLOW_FORWARDING_S) -> Callable[[bytes], bytes]:
    """Spend `delay_s` on every packet from the GWLB, as an appliance whose inspection is slow."""

    def forward(inner: bytes) -> bytes:
        time.sleep(delay_s)
        return inner

    return forward


def _is_icmp_error(inner: bytes) -> bool:
    version = inner[0] >> 4
    if version == 4:
        return inner[9] == 1 and inner[(inner[0] & 0x0F) * 4] in (3, 11, 12)
    return version == 6 and inner[6] == 58 and inner[40] in (1, 2, 3, 4)


FAULTS: dict[str, Fault] = {
    fault.name: fault
    for fault in (
        Fault("strip-options", Point.HEADER, _strip_options, "reply with all options removed and OptLen 0"),
        Fault("reverse-ports", Point.PORTS, lambda ports: (ports[1], ports[0]),
              "reply from port 6081 to the GWLB's source port"),
        Fault("source-port-6081", Point.PORTS, lambda ports: (geneve.PORT, ports[1]),
              "reply from port 6081 like a plain UDP-socket appliance, not from the GWLB's source port"),
        Fault("stale-cookie", Point.REFRESH, lambda _: False,
              "never refresh a cached header: echo a flow's first cookie forever"),
        Fault("flip-cookie", Point.HEADER, _flip_cookie, "xor the cookie value with 1"),
        Fault("truncate-jumbo", Point.INGRESS, lambda inner: None if len(inner) > JUMBO else inner,
              f"drop inner packets larger than {JUMBO} bytes"),
        Fault("key-by-host-pair", Point.FLOW_KEY,
              lambda key: FlowKey(key.eni, 0, (key.low[0], 0), (key.high[0], 0)),
              "cache flows by address pair only, so concurrent flows between two hosts share one header"),
        Fault("one-header-per-flow", Point.SENDER, lambda _: b"",
              "cache one header per flow, not one per direction: harmless under aws, but under tencent a "
              "reply may carry the other direction's cookie word"),
        Fault("ignore-eni", Point.FLOW_KEY, lambda key: key._replace(eni=0),
              "cache flows without their endpoint, so overlapping flows of two endpoints share one header"),
        Fault("tunnels-at-start", Point.NEW_TUNNEL, _tunnels_at_start(),
              "create tunnels only for endpoints seen within 1 s of the first one; drop packets of endpoints created later"),
        Fault("drop-ipv6", Point.INGRESS, lambda inner: None if inner[0] >> 4 == 6 else inner,
              "drop every inner IPv6 packet"),
        Fault("slow-forwarding", Point.INGRESS, _slow_forwarding(),
              f"spend {SLOW_FORWARDING_S * 1000:g} ms on every packet from the GWLB (correct, but slow: PERF shows it)"),
        Fault("drop-icmp-errors", Point.INGRESS, lambda inner: None if _is_icmp_error(inner) else inner,
              "drop ICMP error messages (destination unreachable, time exceeded, packet too big)"),
        Fault("require-syn", Point.INGRESS, _require_syn(),
              "drop TCP packets of connections whose SYN it did not see (breaks rebalanced flows)"),
        Fault("health-slow-under-load", Point.HEALTH_DELAY, _slow_under_load(),
              "answer health probes 3 s late while more than 100 packets/s flow"),
        Fault("health-sidecar", Point.HEALTH_PROCESS, lambda _: True,
              "serve health from a child process that keeps answering 200 after the data path dies"),
        Fault("crash-on-malformed", Point.MALFORMED, lambda _: Reaction.CRASH,
              "exit when a packet from the GWLB cannot be parsed"),
        Fault("echo-malformed", Point.MALFORMED, lambda _: Reaction.ECHO,
              "send packets it could not parse straight back to their sender"),
        Fault("slow-parser", Point.MALFORMED, lambda _: Reaction.STALL,
              "spend 5 ms on every packet it cannot parse (a flood of garbage starves valid traffic)"),
        Fault("health-503", Point.HEALTH, lambda _: 503, "health endpoint always answers 503"),
        Fault("dead-dataplane", Point.EGRESS, lambda _: None, "health stays 200 but no packet is ever returned"),
    )
}


class FaultSet:
    """The faults enabled for one run, grouped by the point where they apply."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names = tuple(names)
        unknown = [name for name in self.names if name not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
        self._by_point = {point: tuple(FAULTS[name].apply for name in self.names if FAULTS[name].point is point)
                          for point in Point}

    def apply(self, point: Point, value: Any) -> Any:
        for function in self._by_point[point]:
            if value is None:
                break
            value = function(value)
        return value
