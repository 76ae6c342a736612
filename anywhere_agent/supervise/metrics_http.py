"""Optional `/metrics` on a loopback address, served from a daemon thread."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

from anywhere_agent.errors import ConfigError
from anywhere_agent.health.render import PROMETHEUS_CONTENT_TYPE

LOG = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9799' or '[::1]:9799' -> (host, port); anything not loopback is refused."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    fix = "set health.metrics_listen to 127.0.0.1:PORT (put a proxy in front to expose it)"
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"health.metrics_listen {listen!r} is not HOST:PORT", fix)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"health.metrics_listen {listen!r} is not a loopback address", fix)
    return host, int(port)


class MetricsServer:
    """Serves `render()` at /metrics; everything else is 404."""

    def __init__(self, listen: str, render: Callable[[], str]) -> None:
        self.address = parse_listen(listen)
        self._render = render
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> tuple[str, int]:
        render = self._render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", PROMETHEUS_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                LOG.debug("metrics: " + format, *args)

        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self._server = Server(self.address, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="metrics-http", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
