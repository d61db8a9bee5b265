"""harness.emulator.health: the target state machine fed probe results directly, and real probes
against servers on 127.0.0.1 (an HTTP server on an ephemeral port, a closed port, and a listener
that never answers). No threads of the checker are started; `record` is driven by the test."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.descriptor import HealthProtocol
from harness.emulator.config import ProbeSettings
from harness.emulator.health import HealthChecker, Reason, TargetState, probe

SETTINGS = ProbeSettings(
    protocol=HealthProtocol.HTTP, port=0, path="/health", matcher=(200, 399), interval_s=1.0,
    timeout_s=0.3, healthy_threshold=3, unhealthy_threshold=2,
)
LOOPBACK = "127.0.0.1"


class Changes(list[tuple[int, bool]]):
    def __call__(self, index: int, healthy: bool) -> None:
        self.append((index, healthy))


def checker(targets: int = 1) -> tuple[HealthChecker, Changes]:
    changes = Changes()
    return HealthChecker([LOOPBACK] * targets, SETTINGS, changes), changes


def passes(health: HealthChecker, count: int, index: int = 0) -> None:
    for _ in range(count):
        health.record(index, True, None, "HTTP 200")


def fails(health: HealthChecker, count: int, reason: Reason = Reason.TIMEOUT, index: int = 0) -> None:
    for _ in range(count):
        health.record(index, False, reason, f"failed: {reason.value}")


def test_starts_initial() -> None:
    health, changes = checker()
    (state,) = health.snapshot()
    assert (state.state, state.reason, state.successes, state.failures) == (TargetState.INITIAL, Reason.INITIAL, 0, 0)
    assert [name for _, name in state.transitions] == ["initial"]
    assert changes == []


def test_initial_to_healthy_after_threshold() -> None:
    health, changes = checker()
    passes(health, 2)
    assert health.health[0].state is TargetState.INITIAL and changes == []
    passes(health, 1)
    state = health.health[0]
    assert (state.state, state.reason, state.last_probe) == (TargetState.HEALTHY, None, "HTTP 200")
    assert changes == [(0, True)]
    passes(health, 5)
    assert changes == [(0, True)]


def test_interrupted_streak_starts_over() -> None:
    health, changes = checker()
    passes(health, 2)
    fails(health, 1, Reason.FAILED)
    passes(health, 2)
    state = health.health[0]
    assert (state.state, state.reason, state.successes) == (TargetState.INITIAL, Reason.INITIAL, 2)
    passes(health, 1)
    assert changes == [(0, True)]


def test_healthy_to_unhealthy_after_threshold_with_reason() -> None:
    health, changes = checker()
    passes(health, 3)
    fails(health, 1, Reason.RESPONSE_CODE)
    assert health.health[0].state is TargetState.HEALTHY
    passes(health, 1)
    fails(health, 1, Reason.RESPONSE_CODE)
    assert health.health[0].state is TargetState.HEALTHY
    fails(health, 1, Reason.RESPONSE_CODE)
    state = health.health[0]
    assert (state.state, state.reason, state.failures) == (TargetState.UNHEALTHY, Reason.RESPONSE_CODE, 2)
    assert state.last_probe == "failed: Target.ResponseCodeMismatch"
    assert changes == [(0, True), (0, False)]


def test_unhealthy_reason_follows_latest_failure_then_recovers() -> None:
    health, changes = checker()
    passes(health, 3)
    fails(health, 2, Reason.TIMEOUT)
    fails(health, 1, Reason.FAILED)
    assert health.health[0].reason is Reason.FAILED
    passes(health, 2)
    assert health.health[0].state is TargetState.UNHEALTHY
    passes(health, 1)
    state = health.health[0]
    assert (state.state, state.reason) == (TargetState.HEALTHY, None)
    assert changes == [(0, True), (0, False), (0, True)]
    assert [name for _, name in state.transitions] == ["initial", "healthy", "unhealthy", "healthy"]
    times = [at for at, _ in state.transitions]
    assert times == sorted(times)


def test_targets_are_independent() -> None:
    health, changes = checker(targets=3)
    passes(health, 3, index=1)
    fails(health, 4, index=2)
    assert [h.state for h in health.snapshot()] == [TargetState.INITIAL, TargetState.HEALTHY, TargetState.UNHEALTHY]
    assert changes == [(1, True), (2, False)]


def test_snapshot_is_a_copy() -> None:
    health, _ = checker()
    snapshot = health.snapshot()
    passes(health, 3)
    assert snapshot[0].state is TargetState.INITIAL
    assert len(snapshot[0].transitions) == 1


class Handler(BaseHTTPRequestHandler):
    agents: list[str] = []

    def do_GET(self) -> None:
        Handler.agents.append(self.headers.get("User-Agent", ""))
        status = {"/health": 200, "/down": 503, "/moved": 302, "/teapot": 418}.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that never accepts: the kernel completes the handshake, nobody ever answers."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def http(port: int, path: str = "/health", **changes: object) -> ProbeSettings:
    return replace(SETTINGS, port=port, path=path, **changes)


def test_probe_http_200(http_port: int) -> None:
    Handler.agents.clear()
    assert probe(LOOPBACK, http(http_port)) == (True, None, "HTTP 200")
    assert Handler.agents == ["ELB-HealthChecker/2.0"]


def test_probe_http_redirect_within_matcher(http_port: int) -> None:
    assert probe(LOOPBACK, http(http_port, "/moved")) == (True, None, "HTTP 302")


@pytest.mark.parametrize(("path", "matcher", "seen"),
                         [("/down", (200, 399), "HTTP 503, expected 200-399"),
                          ("/moved", (200, 299), "HTTP 302, expected 200-299"),
                          ("/teapot", (200, 399), "HTTP 418, expected 200-399")])
def test_probe_http_status_mismatch(http_port: int, path: str, matcher: tuple[int, int], seen: str) -> None:
    assert probe(LOOPBACK, http(http_port, path, matcher=matcher)) == (False, Reason.RESPONSE_CODE, seen)


def test_probe_http_closed_port(closed_port: int) -> None:
    passed, reason, seen = probe(LOOPBACK, http(closed_port))
    assert (passed, reason) == (False, Reason.FAILED)
    assert seen.startswith("ConnectionRefusedError")


def test_probe_http_timeout(silent_port: int) -> None:
    assert probe(LOOPBACK, http(silent_port, timeout_s=0.2)) == (False, Reason.TIMEOUT, "no answer within 0.2 s")


def test_probe_tcp_open_port(http_port: int) -> None:
    assert probe(LOOPBACK, http(http_port, protocol=HealthProtocol.TCP)) == (True, None, "TCP connect ok")


def test_probe_tcp_listener_that_never_answers_is_healthy(silent_port: int) -> None:
    assert probe(LOOPBACK, http(silent_port, protocol=HealthProtocol.TCP))[0]


def test_probe_tcp_closed_port(closed_port: int) -> None:
    passed, reason, seen = probe(LOOPBACK, http(closed_port, protocol=HealthProtocol.TCP))
    assert (passed, reason) == (False, Reason.FAILED)
    assert "Connection refused" in seen


def test_probe_results_drive_the_state_machine(http_port: int) -> None:
    changes = Changes()
    health = HealthChecker([LOOPBACK], http(http_port), changes)
    for _ in range(3):
        health.record(0, *probe(LOOPBACK, health.settings))
    assert changes == [(0, True)]
    down = http(http_port, "/down")
    for _ in range(2):
        health.record(0, *probe(LOOPBACK, down))
    state = health.health[0]
    assert (state.state, state.reason, state.last_probe) == (
        TargetState.UNHEALTHY, Reason.RESPONSE_CODE, "HTTP 503, expected 200-399")
    assert changes == [(0, True), (0, False)]
