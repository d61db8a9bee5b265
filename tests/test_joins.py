"""The `up` join socket, with a fake join function (no root, no testbed)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harness import joins
from harness.errors import HarnessError


def fake_join(name: str) -> list[str]:
    if name == "gwlbe4":
        return ["f1", "gwlbe4", "v1"]
    if name == "broken":
        raise RuntimeError("mininet fell over")
    raise HarnessError(f"no late-joining endpoint {name!r}")


@pytest.fixture
def server(tmp_path: Path):
    server = joins.JoinServer(tmp_path / joins.SOCKET_NAME, fake_join)
    yield server
    server.close()


def test_a_join_returns_the_new_nodes(server: joins.JoinServer) -> None:
    assert joins.request_join(server.path, "gwlbe4") == ["f1", "gwlbe4", "v1"]


def test_the_testbeds_refusal_comes_back_as_the_error(server: joins.JoinServer) -> None:
    with pytest.raises(HarnessError, match="no late-joining endpoint 'gwlbe9'"):
        joins.request_join(server.path, "gwlbe9")


def test_an_unexpected_failure_is_answered_and_the_server_keeps_serving(server: joins.JoinServer) -> None:
    with pytest.raises(HarnessError, match="building endpoint broken failed: mininet fell over"):
        joins.request_join(server.path, "broken")
    assert joins.request_join(server.path, "gwlbe4") == ["f1", "gwlbe4", "v1"]


def test_a_malformed_request_is_told_what_was_expected(server: joins.JoinServer) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(server.path))
        client.sendall(b'{"endpoint": 4}\n')
        assert client.makefile("rb").readline() == b'{"error": "expected one JSON line {\\"endpoint\\": NAME}"}\n'


def test_no_up_listening_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="could not reach the running `up`"):
        joins.request_join(tmp_path / joins.SOCKET_NAME, "gwlbe4")


def test_close_removes_the_socket(tmp_path: Path) -> None:
    server = joins.JoinServer(tmp_path / joins.SOCKET_NAME, fake_join)
    server.close()
    assert not server.path.exists()
