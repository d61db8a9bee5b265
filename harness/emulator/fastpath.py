"""The emulator's data path choice, and the Gwlb whose packets go through the compiled cache first.

The pure-Python data path carries about 20 kpps (benchmarks/README.md), far from issue 8's goals,
so `_fastpath.c` (built by `pip install -e .`) replays in C what Python already decided for a
flow. Decisions stay in one place: core.py and flows.py create, refresh, move and retire flows,
and `CachedGwlb` mirrors each of those into the cache through two hooks (`Gwlb._used` and the
flow table's `FlowListener`). A packet the cache cannot answer exactly as Python would is a miss
and takes the unchanged Python path.

The cache counts its hits (per flow, per zone and second, per target) and `CachedGwlb` folds them
into the Python flows and metrics whenever anyone takes `gwlb.lock` (the cache's own mutex), so
every Python decision and every reading of state (control API, tests) sees them.

`GWLB_DATAPATH=python|fast` chooses the path; by default the fast one when the extension imports.
The cache holds a flow's header for each direction, so it also replays a profile whose cookie word
carries the direction (tencent).
"""

from __future__ import annotations

import enum
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

from harness.emulator.core import Delivery, DropReason, Encapsulated, Gwlb
from harness.emulator.specs import EndpointSpec, Settings, TargetSpec
from harness.flows import Flow
from harness.topology import Stickiness

try:
    from harness.emulator import _fastpath
except ImportError as error:
    _fastpath = None
    IMPORT_ERROR: str | None = str(error)
else:
    IMPORT_ERROR = None

log = logging.getLogger("gwlb.emulator")

ENV = "GWLB_DATAPATH"
AVAILABLE = _fastpath is not None
_TUPLE_SIZE = {Stickiness.FIVE_TUPLE: 5, Stickiness.THREE_TUPLE: 3, Stickiness.TWO_TUPLE: 2}


class Datapath(enum.Enum):
    PYTHON = "python"
    FAST = "fast"


def choose_datapath(environ: Mapping[str, str] = os.environ) -> Datapath:
    """The data path `GWLB_DATAPATH` asks for; unset means fast when it is built, else Python."""
    value = environ.get(ENV, "")
    if not value:
        if AVAILABLE:
            return Datapath.FAST
        log.warning("the compiled fast path does not import (%s); using the Python data path (~20 kpps). "
                    "Run `make setup` (needs gcc and python3-dev) to build it.", IMPORT_ERROR)
        return Datapath.PYTHON
    try:
        datapath = Datapath(value)
    except ValueError:
        raise ValueError(f"{ENV}={value!r}: expected 'python' or 'fast'") from None
    if datapath is Datapath.FAST and not AVAILABLE:
        raise RuntimeError(f"{ENV}=fast, but harness.emulator._fastpath does not import ({IMPORT_ERROR}); "
                           "run `make setup` (needs gcc and python3-dev) to build it")
    return datapath


def gwlb_for(datapath: Datapath) -> type[Gwlb]:
    return CachedGwlb if datapath is Datapath.FAST else Gwlb


class _FoldingLock:
    """The cache's mutex used as the Gwlb's lock; taking it folds the hits counted so far."""

    def __init__(self, gwlb: CachedGwlb) -> None:
        self._gwlb = gwlb

    def __enter__(self) -> None:
        self._gwlb.cache.acquire()
        try:
            self._gwlb.fold()
        except BaseException:
            self._gwlb.cache.release()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._gwlb.cache.release()


class CachedGwlb(Gwlb):
    """A Gwlb whose `from_endpoint`/`from_target` ask the compiled cache first; same results and
    state as `Gwlb` (tests/test_fastpath.py checks it packet by packet)."""

    def __init__(
        self,
        endpoints: list[EndpointSpec],
        targets: list[TargetSpec],
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        registered: Iterable[int] | None = None,
    ) -> None:
        if _fastpath is None:
            raise RuntimeError(f"harness.emulator._fastpath does not import ({IMPORT_ERROR})")
        super().__init__(endpoints, targets, settings, clock, rng, registered)
        self._zones = list(dict.fromkeys(e.zone for e in endpoints))
        self.cache = _fastpath.Cache(
            [self._zones.index(e.zone) for e in endpoints], [t.packed for t in targets],
            _TUPLE_SIZE[settings.stickiness], settings.strict, None if clock is time.monotonic else clock,
            settings.gwlb_profile.cookie_bits,
        )
        self.lock = _FoldingLock(self)  # type: ignore[assignment]
        self.flows.listeners.append(self)

    def from_endpoint(self, endpoint: int, inner: bytes) -> Encapsulated | DropReason:
        with self.lock:
            hit = self.cache.forward(endpoint, inner)
            if hit is not None:
                self.fold()
                return Encapsulated(*hit)
        return super().from_endpoint(endpoint, inner)

    def from_target(self, source: bytes, source_port: int, dest_port: int, payload: bytes) -> Delivery | DropReason:
        with self.lock:
            hit = self.cache.back(source, source_port, dest_port, payload)
            if hit is not None:
                self.fold()
                return Delivery(*hit)
        return super().from_target(source, source_port, dest_port, payload)

    def fold(self) -> None:
        """Add what the cache counted since the last fold to the flows and metrics (lock held)."""
        drained = self.cache.drain()
        if drained is None:
            return
        flows, targets, zones, source_port_changed = drained
        flow: Flow
        for flow, sent, answered, sent_octets, answered_octets, returned, returned_answer, last_seen in flows:
            flow.packets[0] += sent
            flow.packets[1] += answered
            flow.octets[0] += sent_octets
            flow.octets[1] += answered_octets
            flow.returned[0] += returned
            flow.returned[1] += returned_answer
            flow.last_seen = max(flow.last_seen, last_seen)
        for index, packets in enumerate(targets):
            self.target_packets[index] += packets
        for traffic, seconds in [*((self.metrics.zone(z), s) for z, s in zip(self._zones, zones) if s),
                                 (self.metrics.total, zones[-1])]:
            for second, packets, size in seconds:
                traffic.add(packets, size, second)
        self.metrics.source_port_changed += source_port_changed

    def _endpoint_added(self, spec: EndpointSpec) -> None:
        if spec.zone not in self._zones:
            self._zones.append(spec.zone)
        self.cache.add_endpoint(self._zones.index(spec.zone))

    def serve_endpoint(self, endpoint: int, fd: int) -> None:
        """Read an endpoint's tun `fd` in the compiled loop: at once if `serve` runs, else when it starts."""
        with self.lock:
            self.cache.watch(endpoint, fd)

    def _used(self, flow: Flow) -> None:
        key = flow.key
        self.cache.put(flow, flow.cookie, key.endpoint, key.protocol, key.low[0], key.low[1], key.high[0], key.high[1],
                       flow.initiator, flow.target, flow.source_port, flow.header, flow.reply_header,
                       self.flows.idle_limit(flow), flow.last_seen)

    def retired(self, flow: Flow) -> None:
        self.cache.remove(flow.cookie)

    def moved(self, flow: Flow) -> None:
        self.cache.set_target(flow.cookie, flow.target)
