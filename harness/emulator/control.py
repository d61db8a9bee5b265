"""The emulator's control API: HTTP/JSON over a Unix socket in the run directory.

Tests read the flow table, drops, header mismatches and target health while traffic flows, and
act on the load balancer (targets, attributes, endpoints added with a JSON body). A Unix socket
needs no address in any namespace and is reachable from the harness in the root namespace, since
the testbed's hosts share the file system.
"""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from harness.errors import HarnessError

Routes = dict[str, Callable[[], Any]]
Intake = dict[str, Callable[[Any], Any]]
"""POST actions that take a JSON body (e.g. `/endpoints` with the spec of an endpoint to add)."""


class Refused(Exception):
    """An action refused with an HTTP status (400 bad input, 409 conflict) and a precise reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    routes: Routes = {}
    actions: Routes = {}
    intake: Intake = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        route = self.routes.get(self.path.split("?")[0])
        if route is None:
            self._send(404, {"error": f"no resource {self.path}", "resources": sorted(self.routes)})
            return
        self._send(200, route())

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        taking = self.intake.get(self.path)
        if taking is not None:
            self._take(taking)
            return
        action = self.actions.get(self.path)
        if action is None:
            self._send(404, {"error": f"no action {self.path}", "actions": sorted([*self.actions, *self.intake])})
            return
        self._send(200, action())

    def _take(self, action: Callable[[Any], Any]) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError as error:
            self._send(400, {"error": f"{self.path}: expected a JSON body: {error}"})
            return
        try:
            self._send(200, action(body))
        except Refused as refused:
            self._send(refused.status, {"error": f"{self.path}: {refused}"})

    def _send(self, status: int, body: Any) -> None:
        text = isinstance(body, str)
        data = body.encode() if text else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ControlServer:
    def __init__(self, path: str, routes: Routes, actions: Routes | None = None, intake: Intake | None = None) -> None:
        handler = type("Handler", (_Handler,), {"routes": routes, "actions": actions or {}, "intake": intake or {}})
        self._server = _UnixHTTPServer(path, handler)

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("emulator", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class ControlClient:
    """Reads the emulator's state and acts on targets; every call is one short HTTP request."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def get(self, resource: str) -> Any:
        return self._request("GET", resource)

    def post(self, action: str, body: Any = None) -> Any:
        """An action; `body`, when given, is sent as JSON."""
        return self._request("POST", action, body)

    def _request(self, method: str, resource: str, body: Any = None) -> Any:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            if body is None:
                conn.request(method, resource)
            else:
                conn.request(method, resource, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
            answer = json.loads(raw) if response.getheader("Content-Type", "").startswith("application/json") else raw.decode()
        except OSError as error:
            raise HarnessError(f"the emulator's control API ({self.path}) did not answer {resource}: {error}") from None
        finally:
            conn.close()
        if response.status != 200:
            raise HarnessError(f"emulator control API {resource} ({response.status}): {answer}")
        return answer
