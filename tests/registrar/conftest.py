"""Registrar test fixtures: the lab control plane over loopback HTTP, the CLI, a denying proxy."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from anywhere_agent.aws.clients import AwsSettings, Clients
from anywhere_agent.cli.registrar import app
from anywhere_agent.lab.control_plane.admin import LabAdmin
from anywhere_agent.lab.control_plane.server import ControlPlane
from anywhere_agent.lab.operators import create_operator

REGION = "us-east-1"


@dataclass
class Lab:
    """The running control plane, its admin client and its endpoint."""

    plane: ControlPlane
    admin: LabAdmin
    url: str

    def calls(self, service: str, operation: str | None = None) -> int:
        return self.admin.calls().count(service, operation)

    def seed_stale(self, count: int, cluster: str | None, days: float) -> Any:
        """Seed hosts whose last ping was `days` ago (ConnectionLost), ECS agent disconnected."""
        previous = self.admin.configure()["ping_timeout"]  # the lab's real-cadence default
        self.admin.configure(ping_timeout=days * 86400)
        try:
            return self.admin.seed(count, cluster=cluster, online=False, agent_connected=False)
        finally:
            self.admin.configure(ping_timeout=previous)

    def writes(self) -> dict[str, int]:
        """Calls that create or delete anything, by operation (for "nothing created")."""
        found: dict[str, int] = {}
        for ops in self.admin.calls().calls.values():
            for op, n in ops.items():
                if op.startswith(("Create", "Put", "Attach", "Update", "Delete", "Deregister")):
                    found[op] = found.get(op, 0) + n
        return found


@pytest.fixture(scope="session")
def control_plane(shared_control_plane: ControlPlane) -> ControlPlane:
    return shared_control_plane


@pytest.fixture()
def lab(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Lab:
    """A fresh control plane state and an environment that points boto3 (and only it) there,
    holding the key of an IAM user with the registrar's published policy (iam/registrar.json)."""
    control_plane.reset()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in create_operator(control_plane.url, "registrar").environment().items():
        monkeypatch.setenv(name, value)
    control_plane.calls.reset()  # the tests count their own calls, not the operator's setup
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", control_plane.url)
    return Lab(control_plane, LabAdmin(control_plane.url), control_plane.url)


@pytest.fixture()
def clients(lab: Lab) -> Clients:
    """Clients for checking state directly, always at the control plane (never via a proxy)."""
    return Clients(AwsSettings(region=REGION, endpoints={"default": lab.url}))


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture()
def cli(lab: Lab) -> Any:
    """Run `anywhere-agent registrar ...` in-process; stdin is not a TTY, as under Ansible."""
    def invoke(*args: str, stdin: str | None = None) -> CliResult:
        result = CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)
    return invoke


# -- AccessDenied -------------------------------------------------------------------------
# The control plane's fault kinds are throttle/5xx/latency; AccessDenied is a policy answer,
# so a loopback proxy in front of it answers AccessDenied for chosen operations and forwards
# everything else unchanged.


def _operation(headers: Any, body: bytes) -> str:
    target = headers.get("X-Amz-Target", "")
    if target and "." in target:
        return str(target.split(".", 1)[1])
    form = parse_qs(body.decode("utf-8", "replace"))
    return form.get("Action", [""])[0]


@dataclass
class DenyingProxy:
    upstream: str
    denied: set[str] = field(default_factory=set)
    allow_first: dict[str, int] = field(default_factory=dict)  # op -> calls let through
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def deny(self, *operations: str, after: int = 0) -> None:
        with self.lock:
            self.denied = set(operations)
            self.allow_first = {op: after for op in operations}
            self.seen = {}

    def should_deny(self, operation: str) -> bool:
        with self.lock:
            if operation not in self.denied:
                return False
            self.seen[operation] = self.seen.get(operation, 0) + 1
            return self.seen[operation] > self.allow_first.get(operation, 0)


def _handler(proxy: DenyingProxy) -> type[http.server.BaseHTTPRequestHandler]:
    up = urlsplit(proxy.upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            op = _operation(self.headers, body)
            if proxy.should_deny(op):
                self._deny(op)
                return
            conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=30)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("connection", "transfer-encoding")}
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST

        def _deny(self, op: str) -> None:
            message = f"User: arn:aws:iam::123456789012:user/ops is not authorized to perform: {op}"
            if self.headers.get("X-Amz-Target"):
                data = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
                ctype = "application/x-amz-json-1.1"
            else:
                data = (f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                        f"<Message>{message}</Message></Error><RequestId>lab</RequestId>"
                        f"</ErrorResponse>").encode()
                ctype = "text/xml"
            self.send_response(400 if self.headers.get("X-Amz-Target") else 403)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture()
def denying(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[DenyingProxy]:
    """Point the CLI at a proxy that answers AccessDenied for the operations given to deny()."""
    proxy = DenyingProxy(lab.url)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

