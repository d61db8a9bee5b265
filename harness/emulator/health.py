"""Target health checks as AWS runs them: real TCP or HTTP(S) probes from the GWLB's namespace.

A target starts `initial`; `healthy_threshold` consecutive successes make it healthy,
`unhealthy_threshold` consecutive failures make it unhealthy. Each state change is timestamped so
the report can show failover timelines. Every probe opens and closes its own connection.
"""

from __future__ import annotations

import enum
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from harness.descriptor import HealthProtocol
from harness.emulator.config import ProbeSettings


class TargetState(enum.Enum):
    INITIAL = "initial"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Reason(enum.Enum):
    """AWS's reason codes for describe-target-health."""

    INITIAL = "Elb.InitialHealthChecking"
    FAILED = "Target.FailedHealthChecks"
    TIMEOUT = "Target.Timeout"
    RESPONSE_CODE = "Target.ResponseCodeMismatch"


@dataclass
class TargetHealth:
    state: TargetState = TargetState.INITIAL
    reason: Reason | None = Reason.INITIAL
    last_probe: str = ""
    successes: int = 0
    failures: int = 0
    failed_probes: int = 0
    probes: int = 0
    transitions: list[tuple[float, str]] = field(default_factory=list)


def probe(address: str, settings: ProbeSettings) -> tuple[bool, Reason | None, str]:
    """One health check: (passed, failure reason, what was seen)."""
    try:
        if settings.protocol is HealthProtocol.TCP:
            with socket.create_connection((address, settings.port), timeout=settings.timeout_s):
                return True, None, "TCP connect ok"
        if settings.protocol is HealthProtocol.HTTPS:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                address, settings.port, timeout=settings.timeout_s, context=context
            )
        else:
            conn = http.client.HTTPConnection(address, settings.port, timeout=settings.timeout_s)
        try:
            conn.request("GET", settings.path, headers={"User-Agent": "ELB-HealthChecker/2.0", "Connection": "close"})
            status = conn.getresponse().status
        finally:
            conn.close()
    except TimeoutError:
        return False, Reason.TIMEOUT, f"no answer within {settings.timeout_s:g} s"
    except OSError as error:
        return False, Reason.FAILED, f"{type(error).__name__}: {error}"
    except http.client.HTTPException as error:
        return False, Reason.FAILED, f"bad HTTP answer: {type(error).__name__}"
    low, high = settings.matcher
    if low <= status <= high:
        return True, None, f"HTTP {status}"
    return False, Reason.RESPONSE_CODE, f"HTTP {status}, expected {low}-{high}"


class HealthChecker:
    """Probes every target each interval, in one thread per target, and reports state changes."""

    def __init__(
        self,
        addresses: list[str],
        settings: ProbeSettings,
        on_change: Callable[[int, bool], None],
        prober: Callable[[str, ProbeSettings], tuple[bool, Reason | None, str]] = probe,
    ) -> None:
        self.settings = settings
        self.health = [TargetHealth() for _ in addresses]
        self._addresses = addresses
        self._on_change = on_change
        self._prober = prober
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"health-{i}", daemon=True) for i in range(len(addresses))
        ]
        for index in range(len(addresses)):
            self.health[index].transitions.append((time.time(), TargetState.INITIAL.value))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> list[TargetHealth]:
        with self._lock:
            return [replace(h, transitions=list(h.transitions)) for h in self.health]

    def record(self, index: int, passed: bool, reason: Reason | None, seen: str) -> None:
        """Apply one probe result to the target's state machine."""
        with self._lock:
            health = self.health[index]
            health.last_probe = seen
            health.probes += 1
            if passed:
                health.successes, health.failures = health.successes + 1, 0
                if health.state is not TargetState.HEALTHY and health.successes >= self.settings.healthy_threshold:
                    self._change(index, TargetState.HEALTHY, None)
            else:
                health.successes, health.failures = 0, health.failures + 1
                health.failed_probes += 1
                if health.state is not TargetState.UNHEALTHY and health.failures >= self.settings.unhealthy_threshold:
                    self._change(index, TargetState.UNHEALTHY, reason)
                elif health.state is TargetState.UNHEALTHY:
                    health.reason = reason

    def _change(self, index: int, state: TargetState, reason: Reason | None) -> None:
        health = self.health[index]
        health.state, health.reason = state, reason
        health.transitions.append((time.time(), state.value))
        self._on_change(index, state is TargetState.HEALTHY)

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.record(index, *self._prober(self._addresses[index], self.settings))
            self._stop.wait(max(0.0, self.settings.interval_s - (time.monotonic() - started)))
