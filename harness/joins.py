"""The socket through which `join` asks a running `up` to create a `joins: late` endpoint.

The testbed lives in the `up` process (its mininet nodes are that process's children), so only
it can build the endpoint. It listens on a Unix socket in its output folder: a request is one
JSON line `{"endpoint": NAME}`, the answer one line `{"nodes": [...]}` or `{"error": MESSAGE}`.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError

SOCKET_NAME = "up.sock"
JOIN_TIMEOUT_S = 60.0

log = logging.getLogger("gwlb.joins")


class JoinServer:
    """Serves join requests one at a time on a thread, so that it also works while mininet's CLI
    holds the main thread. `join(name)` builds the endpoint and returns the new nodes' names; a
    HarnessError it raises goes back to the caller as the answer's error."""

    def __init__(self, path: Path, join: Callable[[str], list[str]]) -> None:
        self.path, self._join = path, join
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        self._thread = threading.Thread(target=self._serve, name="join-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=JOIN_TIMEOUT_S)
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(JOIN_TIMEOUT_S)
                try:
                    connection.sendall(json.dumps(self._answer(connection)).encode() + b"\n")
                except OSError as error:
                    log.warning("join: could not answer a request: %s", error)

    def _answer(self, connection: socket.socket) -> dict[str, object]:
        try:
            request = json.loads(connection.makefile("rb").readline())
            name = request["endpoint"]
            if not isinstance(name, str):
                raise TypeError(name)
        except (ValueError, KeyError, TypeError):
            return {"error": 'expected one JSON line {"endpoint": NAME}'}
        try:
            return {"nodes": self._join(name)}
        except HarnessError as error:
            return {"error": str(error)}
        except Exception as error:
            log.exception("join: building endpoint %s failed", name)
            return {"error": f"building endpoint {name} failed: {error} (see the `up` log)"}


def request_join(path: Path, endpoint: str) -> list[str]:
    """Ask the `up` listening on `path` to create `endpoint`; the names of the nodes it built."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(JOIN_TIMEOUT_S)
        try:
            client.connect(str(path))
            client.sendall(json.dumps({"endpoint": endpoint}).encode() + b"\n")
            line = client.makefile("rb").readline()
        except OSError as error:
            raise HarnessError(f"could not reach the running `up` at {path}: {error}") from error
    try:
        answer = json.loads(line)
    except ValueError:
        raise HarnessError(f"the running `up` at {path} gave no answer") from None
    if "error" in answer:
        raise HarnessError(answer["error"])
    return list(answer["nodes"])
