"""harness.emulator.control and the body of `POST /endpoints`: actions that take JSON, and their
refusals with a status and a precise reason (no root: a Unix socket in a temporary folder).

    ControlClient ──HTTP/JSON over <tmp>/control.sock──► ControlServer ──► intake["/endpoints"](body)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.emulator.config import EndpointTun
from harness.emulator.control import ControlClient, ControlServer, Refused
from harness.emulator.specs import EndpointSpec
from harness.errors import HarnessError

TUN = EndpointTun(EndpointSpec("gwlbe4", 0x0A4A4A4A4A4A4A4A4, 0xA4, "az1"), "/proc/1/ns/net", "gwlbe4-tun")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[ControlClient, list[Any]]]:
    received: list[Any] = []

    def add(body: Any) -> dict[str, Any]:
        endpoint = EndpointTun.from_json(body) if isinstance(body, dict) and "spec" in body else None
        if endpoint is None:
            raise Refused(400, "expected an endpoint")
        if received:
            raise Refused(409, f"ENI of {endpoint.spec.name} is already endpoint gwlbe4")
        received.append(endpoint)
        return {"index": 3}

    server = ControlServer(str(tmp_path / "control.sock"), {"/flows": lambda: []}, {"/noop": lambda: {"ok": True}},
                           {"/endpoints": add})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ControlClient(str(tmp_path / "control.sock")), received
    finally:
        server.shutdown()
        thread.join(5)


def test_post_with_a_json_body_reaches_the_action(client: tuple[ControlClient, list[Any]]) -> None:
    control, received = client
    assert control.post("/endpoints", TUN.to_json()) == {"index": 3}
    assert received == [TUN]
    assert control.post("/noop") == {"ok": True}


def test_refusals_carry_status_and_reason(client: tuple[ControlClient, list[Any]]) -> None:
    control, _ = client
    control.post("/endpoints", TUN.to_json())
    with pytest.raises(HarnessError, match=r"/endpoints \(409\): .*ENI of gwlbe4 is already endpoint gwlbe4"):
        control.post("/endpoints", TUN.to_json())
    with pytest.raises(HarnessError, match=r"/endpoints \(400\): .*expected an endpoint"):
        control.post("/endpoints", [1, 2])
    with pytest.raises(HarnessError, match=r"\(404\): .*no action /nothing.*'/endpoints', '/noop'"):
        control.post("/nothing")


def test_a_body_that_is_not_json_is_refused(client: tuple[ControlClient, list[Any]]) -> None:
    control, received = client
    with pytest.raises(HarnessError, match=r"/endpoints \(400\): .*expected a JSON body"):
        control._request("POST", "/endpoints", None)
    assert received == []


def test_endpoint_json_round_trip() -> None:
    assert EndpointTun.from_json(TUN.to_json()) == TUN


def _with(**changes: Any) -> dict[str, Any]:
    raw = TUN.to_json()
    spec = {**raw["spec"], **changes.pop("spec", {})}
    return {**raw, "spec": spec, **changes}


@pytest.mark.parametrize(("raw", "message"), [
    ([], "expected an object with keys netns, spec, tun; got list"),
    ({"spec": {}, "tun": "x"}, "expected an object with keys netns, spec, tun; got keys spec, tun"),
    (_with(spec={"zone": None}), "spec.zone: expected a non-empty str, got None"),
    (_with(spec={"eni_id": "vpce-0a"}), "spec.eni_id: expected a non-empty int, got 'vpce-0a'"),
    (_with(spec={"eni_id": True}), "spec.eni_id: expected a non-empty int, got True"),
    (_with(spec={"attachment_id": 1 << 64}), "spec.attachment_id: 18446744073709551616 does not fit in 64 bits"),
    (_with(tun=""), "tun: expected a non-empty string, got ''"),
    ({**TUN.to_json(), "spec": {"name": "x"}}, "spec: expected an object with keys attachment_id, eni_id, name, zone"),
], ids=["list", "missing key", "zone", "eni text", "eni bool", "attachment range", "tun", "spec keys"])
def test_bad_endpoint_json_is_named(raw: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        EndpointTun.from_json(raw)
    assert str(caught.value).startswith(message)
