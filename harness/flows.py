"""Flow table of the emulated GWLB: stickiness, symmetric keys, cookies and their lifecycle.

Pure logic with an injected clock, so every rule (idle timeouts, a new cookie for a reused
5-tuple, rejected non-SYN TCP) is testable without root. The data path asks `classify` for each
inner packet and `by_cookie` for each returned one.
"""

from __future__ import annotations

import enum
import random
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from harness.inet import PROTO_TCP, PROTO_UDP, TCP_FIN, TCP_RST, InnerFlow
from harness.topology import Stickiness

SOURCE_PORT_BASE = 32768
SOURCE_PORT_SPAN = 28232
_RETIRED_COOKIES_KEPT = 65536


@dataclass(frozen=True, slots=True)
class FlowKey:
    """Direction-free flow identity: the same key for both directions of a flow."""

    endpoint: int
    protocol: int
    low: tuple[bytes, int]
    high: tuple[bytes, int]

    @classmethod
    def of(cls, endpoint: int, flow: InnerFlow, stickiness: Stickiness) -> FlowKey:
        ported = flow.protocol in (PROTO_TCP, PROTO_UDP) and stickiness is Stickiness.FIVE_TUPLE
        a = (flow.src, flow.sport if ported else 0)
        b = (flow.dst, flow.dport if ported else 0)
        protocol = 0 if stickiness is Stickiness.TWO_TUPLE else flow.protocol
        return cls(endpoint, protocol, *sorted((a, b)))

    def digest(self) -> int:
        raw = self.endpoint.to_bytes(2, "big") + bytes([self.protocol]) + self.low[0] + self.high[0]
        return zlib.crc32(raw + self.low[1].to_bytes(2, "big") + self.high[1].to_bytes(2, "big"))


@dataclass(eq=False)
class Flow:
    """One flow's assignment: fixed target, cookie and outer source port for its whole life.

    `header` goes on packets from the initiator and `reply_header` on packets towards it; they
    differ only under a profile whose cookie word carries the direction (tencent)."""

    key: FlowKey
    target: int
    cookie: int
    source_port: int
    created: float
    last_seen: float
    initiator: bytes
    header: bytes = b""
    reply_header: bytes = b""
    packets: list[int] = field(default_factory=lambda: [0, 0])
    octets: list[int] = field(default_factory=lambda: [0, 0])
    returned: list[int] = field(default_factory=lambda: [0, 0])
    fins: set[bytes] = field(default_factory=set)
    reset: bool = False

    @property
    def closed(self) -> bool:
        return self.reset or len(self.fins) >= 2

    def direction(self, src: bytes) -> int:
        """0 for packets from the side that opened the flow, 1 for the other side."""
        return 0 if src == self.initiator else 1

    def header_for(self, direction: int) -> bytes:
        """The GENEVE header the GWLB sends on this flow's packets going `direction`."""
        return self.reply_header if direction else self.header


class Outcome(enum.Enum):
    EXISTING = "existing"
    NEW = "new"
    REJECTED_TCP = "rejected_tcp"
    UNRELATED = "unrelated"


@dataclass(frozen=True)
class Timeouts:
    tcp_idle_s: float
    other_idle_s: float


class FlowListener(Protocol):
    """Told when a flow leaves the table or changes target (the fast-path cache, the flow log)."""

    def retired(self, flow: Flow) -> None: ...

    def moved(self, flow: Flow) -> None: ...


class FlowTable:
    """Assigns flows to targets and remembers them; both directions resolve to one Flow."""

    def __init__(
        self,
        stickiness: Stickiness,
        timeouts: Timeouts,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        cookie_bits: int = 32,
    ) -> None:
        self.stickiness = stickiness
        self.cookie_bits = cookie_bits
        self.timeouts = timeouts
        self._clock = clock
        self._rng = rng or random.SystemRandom()
        self._flows: dict[FlowKey, Flow] = {}
        self._cookies: dict[int, Flow] = {}
        self._retired: OrderedDict[int, None] = OrderedDict()
        self.listeners: list[FlowListener] = []

    def __len__(self) -> int:
        return len(self._flows)

    def flows(self) -> list[Flow]:
        return list(self._flows.values())

    def classify(
        self, endpoint: int, inner: InnerFlow, choose_target: Callable[[FlowKey], int]
    ) -> tuple[Outcome, Flow | None]:
        """The flow of an inner packet, creating one when the rules allow; updates TCP state."""
        key = FlowKey.of(endpoint, inner, self.stickiness)
        now = self._clock()
        flow = self._flows.get(key)
        reused = flow is not None and flow.closed and inner.is_tcp_syn and not inner.icmp_error and self.stickiness is Stickiness.FIVE_TUPLE
        if flow is not None and (reused or self._expired(flow, now)):
            self._retire(flow)
            flow = None
        outcome = Outcome.EXISTING
        if flow is None:
            if inner.icmp_error:
                return Outcome.UNRELATED, None
            if inner.protocol == PROTO_TCP and not inner.is_tcp_syn:
                return Outcome.REJECTED_TCP, None
            flow = self._create(key, choose_target(key), inner.src, now)
            outcome = Outcome.NEW
        flow.last_seen = now
        flow.packets[flow.direction(inner.src)] += 1
        if inner.protocol == PROTO_TCP and not inner.icmp_error:
            if inner.tcp_flags & TCP_RST:
                flow.reset = True
            if inner.tcp_flags & TCP_FIN:
                flow.fins.add(inner.src)
        return outcome, flow

    def get(self, key: FlowKey) -> Flow | None:
        return self._flows.get(key)

    def by_cookie(self, cookie: int) -> Flow | None:
        flow = self._cookies.get(cookie)
        if flow is not None and self._expired(flow, self._clock()):
            self._retire(flow)
            return None
        return flow

    def is_retired(self, cookie: int) -> bool:
        return cookie in self._retired

    def touch(self, flow: Flow) -> None:
        flow.last_seen = self._clock()

    def expire(self) -> int:
        """Drop idle flows; returns how many were removed."""
        now = self._clock()
        stale = [flow for flow in self._flows.values() if self._expired(flow, now)]
        for flow in stale:
            self._retire(flow)
        return len(stale)

    def of_target(self, target: int) -> list[Flow]:
        return [flow for flow in self._flows.values() if flow.target == target]

    def retire_all(self, flows: Sequence[Flow]) -> None:
        for flow in flows:
            self._retire(flow)

    def reassign(self, flows: Sequence[Flow], choose_target: Callable[[FlowKey], int]) -> None:
        """Move flows to other targets (rebalance); cookies stay, as AWS keeps the flow."""
        for flow in flows:
            flow.target = choose_target(flow.key)
            for listener in self.listeners:
                listener.moved(flow)

    def idle_limit(self, flow: Flow) -> float:
        """Seconds without traffic after which the flow expires (by the key's protocol)."""
        return self.timeouts.tcp_idle_s if flow.key.protocol == PROTO_TCP else self.timeouts.other_idle_s

    def _expired(self, flow: Flow, now: float) -> bool:
        return now - flow.last_seen > self.idle_limit(flow)

    def _create(self, key: FlowKey, target: int, initiator: bytes, now: float) -> Flow:
        cookie = self._new_cookie()
        port = SOURCE_PORT_BASE + key.digest() % SOURCE_PORT_SPAN
        flow = Flow(key, target, cookie, port, now, now, initiator)
        self._flows[key] = flow
        self._cookies[cookie] = flow
        return flow

    def _new_cookie(self) -> int:
        while True:
            cookie = self._rng.getrandbits(self.cookie_bits)
            if cookie not in self._cookies and cookie not in self._retired:
                return cookie

    def _retire(self, flow: Flow) -> None:
        self._flows.pop(flow.key, None)
        self._cookies.pop(flow.cookie, None)
        self._retired[flow.cookie] = None
        if len(self._retired) > _RETIRED_COOKIES_KEPT:
            self._retired.popitem(last=False)
        for listener in self.listeners:
            listener.retired(flow)
