"""HTTP health endpoint: `GET /` and `GET /health` answer with the appliance's statistics as JSON.

It runs in its own thread so probes are answered even while the data path is busy, and closes the
connection after every response, like a GWLB health check expects.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

PATHS = {"/", "/health"}


def start_health(
    port: int, *, snapshot: Callable[[], dict], status: Callable[[], int], delay: Callable[[], float] = lambda: 0.0
) -> ThreadingHTTPServer:
    """Serve the endpoint on 0.0.0.0:`port` in a daemon thread; call `shutdown()` to stop it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in PATHS:
                time.sleep(delay())
                code, body = status(), json.dumps(snapshot()).encode()
            else:
                code, body = 404, json.dumps({"error": f"no such path {self.path}"}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            log.debug("health %s: %s", self.client_address[0], format % args)

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
