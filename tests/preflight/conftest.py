"""Fixtures for preflight tests: a healthy node on a temp root, a scripted runner for
timedatectl, and loopback servers (endpoints, an HTTP CONNECT proxy, IMDS) reached through a
connector that maps names to 127.0.0.1 ports and never touches any other address."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.config import Config
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.preflight import PreflightReport, run_preflight
from anywhere_agent.preflight.model import CheckResult

GIB = 1024**3
DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
REGION = "us-east-1"
ENDPOINT_HOSTS = tuple(f"{s}.{REGION}.amazonaws.com"
                       for s in ("ssm", "ec2messages", "ssmmessages", "ecs"))
PACKAGE_HOSTS = (f"amazon-ssm-{REGION}.s3.{REGION}.amazonaws.com",
                 f"amazon-ecs-agent-{REGION}.s3.{REGION}.amazonaws.com")
ALL_HOSTS = ENDPOINT_HOSTS + PACKAGE_HOSTS
# Debian's ca-certificates bundle, in shape (no real certificate is needed to find it).
PEM_BUNDLE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@dataclass
class Node:
    """A node's filesystem under a temp root, written with node paths."""

    root: Path

    def write(self, node_path: str, text: str) -> Path:
        path = self.root / node_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def mkdir(self, node_path: str) -> Path:
        path = self.root / node_path.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove(self, node_path: str) -> None:
        path = self.root / node_path.lstrip("/")
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A healthy, unregistered Debian 12 systemd host with cgroup v2."""
    n = Node(tmp_path)
    n.mkdir("/run/systemd/system")
    n.write("/etc/os-release", DEBIAN_12)
    n.write("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n")
    n.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    n.mkdir("/var/lib")
    n.mkdir("/etc/systemd/system")
    n.write("/etc/ssl/certs/ca-certificates.crt", PEM_BUNDLE)
    return n


@dataclass
class FakeRunner:
    """Answers `timedatectl show -p NTPSynchronized --value`; None = the command fails."""

    ntp: str | None = "yes"
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], *, input: bytes | None = None,
                 env: Mapping[str, str] | None = None, timeout: float | None = None) -> Result:
        self.calls.append(tuple(argv))
        if argv[0] == "timedatectl" and self.ntp is not None:
            return Result(tuple(argv), 0, self.ntp + "\n", "")
        return Result(tuple(argv), 1, "", "Failed to connect to bus: No such file or directory")


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def host(node: Node, runner: FakeRunner) -> Host:
    return Host(node.root, runner)


# --- loopback servers -------------------------------------------------------------------


class LoopbackServer:
    """A TCP server on 127.0.0.1 handling each connection in a thread with `handler`."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self._handler = handler
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._handler(conn)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self._sock.close()
        for conn in self._held:
            conn.close()
        self._thread.join(timeout=2)


def read_request(conn: socket.socket) -> tuple[str, dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("iso-8859-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return head[0], headers


@pytest.fixture
def servers() -> Iterator[Callable[[Callable[[socket.socket], None]], LoopbackServer]]:
    started: list[LoopbackServer] = []

    def start(handler: Callable[[socket.socket], None]) -> LoopbackServer:
        server = LoopbackServer(handler)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def accept_and_close(conn: socket.socket) -> None:
    conn.close()


def stay_silent(conn: socket.socket) -> None:
    """Hold the connection open and never answer (the server closes it at teardown)."""


@pytest.fixture
def open_port(servers: Any) -> int:
    """A loopback port that accepts connections (and closes them)."""
    port: int = servers(accept_and_close).port
    return port


@pytest.fixture
def silent_port(servers: Any) -> int:
    """A loopback port that accepts connections and never says a word."""
    port: int = servers(stay_silent).port
    return port


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@dataclass
class Names:
    """Fake DNS + routing: (name, port) -> loopback port. Unknown names fail like DNS does,
    so a probe can never reach a real address."""

    table: dict[tuple[str, int], int] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def add(self, name: str, port: int, loopback_port: int) -> None:
        self.table[(name, port)] = loopback_port

    def connect(self, name: str, port: int, timeout: float) -> socket.socket:
        self.calls.append((name, port))
        target = self.table.get((name, port))
        if target is None:
            raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {name}")
        return socket.create_connection(("127.0.0.1", target), timeout=timeout)

    def hosts_called(self) -> set[str]:
        return {name for name, _ in self.calls}


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def reachable(names: Names, servers: Any) -> Names:
    """Every public endpoint and package host answers on 443."""
    server = servers(accept_and_close)
    for name in ALL_HOSTS:
        names.add(name, 443, server.port)
    return names


@dataclass
class ProxyLog:
    request_lines: list[str] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


def make_proxy(names: Names, log: ProxyLog) -> Callable[[socket.socket], None]:
    """A tiny HTTP proxy: CONNECT host:port and GET http://host:port/, resolved via `names`."""

    def handle(conn: socket.socket) -> None:
        line, headers = read_request(conn)
        log.request_lines.append(line)
        if "proxy-authorization" in headers:
            log.auth.append(headers["proxy-authorization"])
        method, target = line.split(" ")[:2]
        authority = target.split("://", 1)[1].split("/", 1)[0] if "://" in target else target
        name, _, port = authority.rpartition(":")
        # Resolved from the table, not names.connect, so names.calls holds only our probes.
        upstream = names.table.get((name, int(port)))
        try:
            if upstream is None:
                raise OSError("unknown upstream")
            socket.create_connection(("127.0.0.1", upstream), timeout=1.0).close()
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        if method == "CONNECT":
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    return handle


@pytest.fixture
def proxy(names: Names, servers: Any) -> tuple[str, ProxyLog]:
    """A CONNECT proxy reachable as proxy.corp.test:3128; returns (its URL, its log)."""
    log = ProxyLog()
    server = servers(make_proxy(names, log))
    names.add("proxy.corp.test", 3128, server.port)
    return "http://proxy.corp.test:3128", log


@dataclass
class Imds:
    """An IMDSv2 double: requests log, the role list it serves (empty = 404)."""

    roles: tuple[str, ...] = ()
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def handle(self, conn: socket.socket) -> None:
        line, headers = read_request(conn)
        self.requests.append((line, headers))
        if line.startswith("PUT /latest/api/token"):
            body = b"TOKEN-abc"
            status = "200 OK"
        elif line.startswith("GET /latest/meta-data/iam/security-credentials/"):
            if headers.get("x-aws-ec2-metadata-token") != "TOKEN-abc":
                status, body = "401 Unauthorized", b""
            elif self.roles:
                status, body = "200 OK", "\n".join(self.roles).encode()
            else:
                status, body = "404 Not Found", b""
        else:
            status, body = "404 Not Found", b""
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        conn.close()


@pytest.fixture
def imds(names: Names, servers: Any) -> Imds:
    """The IMDS double, reachable as 169.254.169.254:80 through `names` only."""
    double = Imds()
    server = servers(double.handle)
    names.add("169.254.169.254", 80, server.port)
    return double


# --- running preflight ------------------------------------------------------------------


def _config(**overrides: Any) -> Config:
    return Config(**{"region": REGION, **overrides})


@pytest.fixture
def make_config() -> Callable[..., Config]:
    """Config(region=us-east-1, ...) with keyword overrides."""
    return _config


@pytest.fixture
def preflight(host: Host, names: Names) -> Callable[..., PreflightReport]:
    """run_preflight on the temp-root host with healthy defaults; keywords override them."""

    def run(cfg: Config | None = None, **kwargs: Any) -> PreflightReport:
        args: dict[str, Any] = {
            "env": {}, "euid": 0, "machine": "x86_64", "network": True,
            "connect": names.connect, "disk_free": lambda path: 50 * GIB,
            "memory_total": lambda: 8 * GIB, "timeout": 1.0,
        }
        args.update(kwargs)
        env = args.pop("env")
        h = args.pop("host", host)
        return run_preflight(cfg or _config(), h, env, **args)

    return run


def _pick(report: PreflightReport, name: str) -> CheckResult:
    matches = [c for c in report.checks if c.name == name]
    assert len(matches) == 1, f"{name}: {[c.name for c in report.checks]}"
    return matches[0]


@pytest.fixture
def pick() -> Callable[[PreflightReport, str], CheckResult]:
    """The one result named `name` in a report."""
    return _pick
