"""The GWLB's data-plane decisions, free of sockets so they are testable without root.

`Gwlb.from_endpoint` turns an inner packet steered to an endpoint into a GENEVE packet for a
target; `Gwlb.from_target` validates what a target sends back and yields the inner packet to
deliver. Every drop has a named reason, counted and kept in a short log for the report.
"""

from __future__ import annotations

import enum
import ipaddress
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from harness import geneve
from harness.emulator.metrics import Metrics
from harness.emulator.specs import EndpointSpec, Settings, TargetSpec
from harness.emulator.targets import NoTarget, TargetPool
from harness.flows import Flow, FlowKey, FlowTable, Outcome
from harness.inet import InnerFlow, PacketError, parse_inner
from harness.profiles import Direction

MAX_INNER = 8500
_REJECT_LOG_SIZE = 256


class DropReason(enum.Enum):
    OVERSIZE = "oversize"
    FRAGMENT = "fragment"
    NOT_IP = "not_ip"
    REJECTED_TCP = "rejected_tcp"
    ICMP_NO_FLOW = "icmp_no_flow"
    NO_TARGET = "no_target"
    DST_PORT = "dst_port"
    UNKNOWN_SOURCE = "unknown_source"
    MALFORMED = "malformed"
    MISSING_OPTIONS = "missing_options"
    CRITICAL_OPTION = "critical_option"
    UNKNOWN_COOKIE = "unknown_cookie"
    STALE_COOKIE = "stale_cookie"
    ENI_MISMATCH = "eni_mismatch"
    ATTACHMENT_MISMATCH = "attachment_mismatch"
    WRONG_TARGET = "wrong_target"
    DIRECTION = "direction"
    SOURCE_PORT = "source_port"
    EMPTY = "empty"


class EndpointConflict(ValueError):
    """An endpoint to add has the ENI ID or name of one the load balancer has already."""


@dataclass(frozen=True)
class Encapsulated:
    target: int
    source_port: int
    payload: bytes


@dataclass(frozen=True)
class Delivery:
    endpoint: int
    inner: bytes


@dataclass(frozen=True)
class Reject:
    at: float
    reason: DropReason
    source: str
    detail: str
    header: str


@dataclass
class Mismatch:
    """A returned header that differed from the one sent for the flow (first one seen kept)."""

    expected: str
    observed: str
    count: int = 0


@dataclass(frozen=True)
class Mixup:
    """A returned packet of flow `observed` that carried the cookie of flow `expected`."""

    cookie: int
    expected: str
    observed: str


class Gwlb:
    """One load balancer with its endpoints and targets; thread-safe through one lock."""

    def __init__(
        self,
        endpoints: list[EndpointSpec],
        targets: list[TargetSpec],
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        registered: Iterable[int] | None = None,
    ) -> None:
        self.endpoints = list(endpoints)
        self.targets = targets
        self.settings = settings
        self.lock = threading.Lock()
        self._rng = rng or random.SystemRandom()
        self.profile = settings.gwlb_profile
        self._known_options = self.profile.layout.types
        self.flows = FlowTable(settings.stickiness, settings.timeouts, clock, self._rng, self.profile.cookie_bits)
        self.pool = TargetPool(
            targets, range(len(targets)) if registered is None else registered, settings.cross_zone, clock, self._rng,
            self.profile.all_unhealthy,
        )
        self.target_packets = [0] * len(targets)
        self.metrics = Metrics()
        self.rejects: deque[Reject] = deque(maxlen=_REJECT_LOG_SIZE)
        self.mismatches: dict[int, Mismatch] = {}
        self.mixup_samples: list[Mixup] = []
        self._clock = clock
        self._by_address = {t.packed: i for i, t in enumerate(targets)}

    def from_endpoint(self, endpoint: int, inner: bytes) -> Encapsulated | DropReason:
        if len(inner) > MAX_INNER:
            return self._drop(DropReason.OVERSIZE, self.endpoints[endpoint].name, f"{len(inner)} bytes")
        try:
            flow_id = parse_inner(inner)
        except PacketError as error:
            return self._drop(DropReason.NOT_IP, self.endpoints[endpoint].name, str(error))
        if flow_id.fragment:
            return self._drop(DropReason.FRAGMENT, self.endpoints[endpoint].name, "IP fragment")
        with self.lock:
            try:
                outcome, flow = self.flows.classify(endpoint, flow_id, self._choose_target)
            except NoTarget as error:
                return self._drop(DropReason.NO_TARGET, self.endpoints[endpoint].name, str(error))
            if outcome is Outcome.UNRELATED:
                return self._drop(DropReason.ICMP_NO_FLOW, self.endpoints[endpoint].name, "ICMP error about no known flow")
            if outcome is Outcome.REJECTED_TCP or flow is None:
                self.metrics.rejected_tcp(self.endpoints[endpoint].zone)
                return self._drop(DropReason.REJECTED_TCP, self.endpoints[endpoint].name, "non-SYN TCP of an unknown flow")
            if outcome is Outcome.NEW:
                self.metrics.new_flow(self.endpoints[endpoint].zone)
                spec = self.endpoints[endpoint]
                protocol = geneve.PROTO_IPV4 if flow_id.version == 4 else geneve.PROTO_IPV6
                flow.header = self.profile.header(protocol, spec.eni_id, spec.attachment_id, flow.cookie,
                                                  Direction.FROM_INITIATOR)
                flow.reply_header = flow.header if not self.profile.directional else self.profile.header(
                    protocol, spec.eni_id, spec.attachment_id, flow.cookie, Direction.TO_INITIATOR)
            self.metrics.packet(self.endpoints[endpoint].zone, len(inner), self._clock())
            self.target_packets[flow.target] += 1
            direction = flow.direction(flow_id.src)
            flow.octets[direction] += len(inner)
            self._used(flow)
            return Encapsulated(flow.target, flow.source_port, flow.header_for(direction) + inner)

    def from_target(self, source: bytes, source_port: int, dest_port: int, payload: bytes) -> Delivery | DropReason:
        origin = str(ipaddress.IPv4Address(source))
        if dest_port != geneve.GENEVE_PORT:
            return self._drop(DropReason.DST_PORT, origin, f"sent to UDP port {dest_port}, not {geneve.GENEVE_PORT}")
        target = self._by_address.get(source)
        if target is None:
            return self._drop(DropReason.UNKNOWN_SOURCE, origin, "not a registered target")
        try:
            header, raw, inner = geneve.split(payload)
        except geneve.GeneveError as error:
            return self._drop(DropReason.MALFORMED, origin, str(error), payload[:64])
        unknown = [o for o in header.options if o.critical and (o.opt_class, o.opt_type & 0x7F) not in self._known_options]
        if unknown:
            option = unknown[0]
            return self._drop(DropReason.CRITICAL_OPTION, origin, f"unknown critical option class {option.opt_class:#06x} type {option.opt_type:#04x}", raw)
        try:
            meta = self.profile.metadata(header)
        except geneve.GeneveError as error:
            return self._drop(DropReason.MISSING_OPTIONS, origin, str(error), raw)
        direction_field, cookie = self.profile.split_cookie_word(meta.cookie)
        with self.lock:
            flow = self.flows.by_cookie(cookie)
            if flow is None:
                reason = DropReason.STALE_COOKIE if self.flows.is_retired(cookie) else DropReason.UNKNOWN_COOKIE
                return self._drop(reason, origin, f"cookie {cookie:#010x}", raw)
            endpoint = self.endpoints[flow.key.endpoint]
            if meta.eni_id != endpoint.eni_id:
                return self._drop(DropReason.ENI_MISMATCH, origin, f"ENI {geneve.format_eni(meta.eni_id)}", raw)
            if meta.attachment_id != endpoint.attachment_id:
                return self._drop(DropReason.ATTACHMENT_MISMATCH, origin, f"attachment {meta.attachment_id:#018x}", raw)
            if target != flow.target:
                return self._drop(DropReason.WRONG_TARGET, origin, f"flow belongs to {self.targets[flow.target].name}", raw)
            if self.settings.strict and source_port != flow.source_port:
                return self._drop(DropReason.SOURCE_PORT, origin, f"source port {source_port}, sent from {flow.source_port}", raw)
            if not inner:
                return self._drop(DropReason.EMPTY, origin, "no inner packet", raw)
            if len(inner) > MAX_INNER:
                return self._drop(DropReason.OVERSIZE, origin, f"{len(inner)} bytes", raw)
            returned: InnerFlow | None = None
            not_ip = ""
            try:
                returned = parse_inner(inner)
            except PacketError as error:
                not_ip = str(error)
            direction = Direction.FROM_INITIATOR if returned is None else Direction(flow.direction(returned.src))
            expected = self.profile.direction_values[direction]
            if returned is not None and direction_field != expected:
                return self._drop(DropReason.DIRECTION, origin, f"direction field {direction_field} on a packet "
                                  f"{direction.name.lower().replace('_', ' ')}, expected {expected}", raw)
            if source_port != flow.source_port:
                self.metrics.source_port_changed += 1
            if raw != flow.header_for(direction):
                self._record_mismatch(flow, flow.header_for(direction), raw)
            self.flows.touch(flow)
            self._used(flow)
            if returned is None:
                return self._drop(DropReason.NOT_IP, origin, not_ip, raw)
            self._check_mixup(flow, returned)
            flow.returned[direction] += 1
            self.metrics.packet(self.endpoints[flow.key.endpoint].zone, len(inner), self._clock())
            return Delivery(flow.key.endpoint, inner)

    def add_endpoint(self, spec: EndpointSpec) -> int:
        """An endpoint created against the running load balancer (AWS lets consumers create one at any
        time); its index. Existing endpoints, flows and cookies are untouched."""
        with self.lock:
            self.check_endpoint(spec)
            self.endpoints.append(spec)
            self._endpoint_added(spec)
            return len(self.endpoints) - 1

    def check_endpoint(self, spec: EndpointSpec) -> None:
        """Raise EndpointConflict if `spec` reuses the ENI ID or name of an endpoint."""
        for index, known in enumerate(self.endpoints):
            if known.eni_id == spec.eni_id:
                raise EndpointConflict(f"ENI {geneve.format_eni(spec.eni_id)} is already endpoint {known.name} (index {index})")
            if known.name == spec.name:
                raise EndpointConflict(f"an endpoint named {spec.name!r} exists already (ENI {geneve.format_eni(known.eni_id)})")

    @property
    def healthy(self) -> set[int]:
        return self.pool.healthy()

    def set_health(self, target: int, healthy: bool) -> None:
        """Health checker verdict; with `rebalance`, a failed target's flows (only those) move."""
        with self.lock:
            self.pool.set_health(target, healthy)
            if not healthy and self.settings.rebalance:
                self._move_flows_of(target)

    def set_failover(self, rebalance: bool) -> None:
        """modify-target-group-attributes for target_failover.on_unhealthy / on_deregistration
        (AWS requires both to be equal, so one switch sets both)."""
        with self.lock:
            self.settings = replace(self.settings, rebalance=rebalance)

    def register(self, target: int) -> None:
        with self.lock:
            self.pool.register(target)

    def deregister(self, target: int) -> None:
        """Start draining: no new flows; existing ones continue until the deregistration delay ends."""
        with self.lock:
            self.pool.deregister(target, self.settings.deregistration_delay_s)
        self.tick()

    def tick(self) -> None:
        """Periodic work: expire idle flows and end deregistrations whose delay has passed."""
        with self.lock:
            self.flows.expire()
            for target in self.pool.drained():
                if self.settings.rebalance:
                    self._move_flows_of(target)
                else:
                    self.flows.retire_all(self.flows.of_target(target))

    def _move_flows_of(self, target: int) -> None:
        flows = self.flows.of_target(target)
        try:
            self.flows.reassign(flows, self._choose_target)
            self.metrics.rebalanced_flows += len(flows)
        except NoTarget:
            return

    def _endpoint_added(self, spec: EndpointSpec) -> None:
        """Hook: an endpoint was appended to `endpoints` (lock held; the fast path learns its zone)."""

    def _used(self, flow: Flow) -> None:
        """Hook: the slow path just created or refreshed `flow` (the fast path caches it)."""

    def _choose_target(self, key: FlowKey) -> int:
        return self.pool.choose(self.endpoints[key.endpoint].zone, key.digest())

    def _check_mixup(self, flow: Flow, returned: InnerFlow) -> None:
        """Count a packet that came back under another live flow's cookie (a cookie mix-up).

        A modified inner packet (NAT) that matches no other flow is not a mix-up.
        """
        key = FlowKey.of(flow.key.endpoint, returned, self.settings.stickiness)
        if key != flow.key and self.flows.get(key) is not None:
            self.metrics.mixups += 1
            if len(self.mixup_samples) < _REJECT_LOG_SIZE:
                self.mixup_samples.append(Mixup(flow.cookie, _describe(flow.key), _describe(key)))

    def _record_mismatch(self, flow: Flow, expected: bytes, raw: bytes) -> None:
        entry = self.mismatches.setdefault(flow.cookie, Mismatch(expected.hex(), raw.hex()))
        entry.count += 1

    def _drop(self, reason: DropReason, source: str, detail: str, header: bytes = b"") -> DropReason:
        self.metrics.drops[reason] += 1
        self.rejects.append(Reject(self._clock(), reason, source, detail, header.hex()))
        return reason


def _describe(key: FlowKey) -> str:
    def end(address: bytes, port: int) -> str:
        text = str(ipaddress.ip_address(address))
        return f"{text}:{port}" if port else text

    return f"proto {key.protocol} {end(*key.low)} <-> {end(*key.high)}"
