"""Helpers for the agent-double tests: a recording fake control plane, temp roots, processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for

DOUBLES = Path(__file__).resolve().parents[3] / "anywhere_agent" / "lab" / "doubles"
SSM = DOUBLES / "ssm_agent.py"
ECS = DOUBLES / "ecs_agent.py"
# The doubles run on a lab host's /usr/bin/python3; prefer it so the tests exercise the same.
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
INSTANCE_ID = "mi-0123456789abcdef0"
CI_ARN = (
    "arn:aws:ecs:us-east-1:123456789012:container-instance/lab/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
)


@dataclass
class Seen:
    """One request as the fake received it: raw headers and the de-chunked body."""

    path: str
    headers: dict[str, str]
    body: bytes
    chunked: bool

    @property
    def target(self) -> str:
        return self.headers.get("x-amz-target", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class FakePlane:
    """A loopback AWS JSON 1.1 endpoint that records every request and answers by rules."""

    server: ThreadingHTTPServer
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    token_ttl: float = 1800.0
    echo_attributes: bool = True
    deregistered: bool = False
    missing_clusters: set[str] = field(default_factory=lambda: {"missing"})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def calls(self, operation: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.target.endswith("." + operation)]

    def dials(self) -> list[Seen]:
        """WebSocket upgrades (ACS/TCS) the fake saw; it refuses them all."""
        with self.lock:
            return [s for s in self.seen if s.path.startswith("/ws")]

    def wait_for(self, operation: str, count: int = 1, timeout: float = 15.0) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls(operation)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{operation} seen {len(self.calls(operation))} times, wanted {count}")

    def answer(self, seen: Seen) -> tuple[int, dict[str, Any]]:
        op = seen.target.rsplit(".", 1)[-1]
        body = seen.json if seen.body else {}
        if op == "RegisterManagedInstance":
            if body.get("ActivationCode") == "bad-code":
                return 400, {"__type": "InvalidActivation", "message": "Activation ID is not valid"}
            return 200, {"InstanceId": INSTANCE_ID}
        if op == "RequestManagedInstanceRoleToken":
            if not seen.chunked:  # the real service's front end needs what the real agent sends
                return 400, {"__type": "SerializationException", "message": "empty body"}
            if self.deregistered:
                return 400, {"__type": "InvalidInstanceId", "message": "instance is deregistered"}
            return 200, {
                "AccessKeyId": "ASIALAB" + uuid.uuid4().hex[:13].upper(),
                "SecretAccessKey": "secret-" + uuid.uuid4().hex,
                "SessionToken": "token-" + uuid.uuid4().hex,
                "TokenExpirationDate": time.time() + self.token_ttl,
                "UpdateKeyPair": False,
            }
        if op == "UpdateInstanceInformation":
            return 200, {}
        if op == "GetMessages":
            return 200, {"Destination": body.get("Destination", ""), "Messages": [],
                         "MessagesRequestId": body.get("MessagesRequestId", "")}
        if op == "RegisterContainerInstance":
            if body.get("cluster") in self.missing_clusters:
                return 400, {"__type": "ClusterNotFoundException", "message": "Cluster not found."}
            attrs = body.get("attributes", []) if self.echo_attributes else []
            return 200, {
                "containerInstance": {
                    "containerInstanceArn": body.get("containerInstanceArn") or CI_ARN,
                    "ec2InstanceId": INSTANCE_ID,
                    "attributes": attrs,
                    "status": "ACTIVE",
                    "agentConnected": False,
                }
            }
        if op == "DiscoverPollEndpoint":
            return 200, {"endpoint": self.url, "telemetryEndpoint": self.url}
        if op == "CreateCluster":
            self.missing_clusters.discard(body.get("clusterName", ""))
            return 200, {"cluster": {"clusterName": body.get("clusterName")}}
        return 400, {"__type": "UnknownOperationException", "message": op}


def _make_handler(plane_ref: list[FakePlane]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            plane = plane_ref[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            if chunked:
                body = b""
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    body += self.rfile.read(size)
                    self.rfile.readline()
            else:
                body = self.rfile.read(int(headers.get("content-length", "0") or 0))
            seen = Seen(self.path, headers, body, chunked)
            with plane.lock:
                plane.seen.append(seen)
            status, doc = plane.answer(seen)
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            plane = plane_ref[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            with plane.lock:
                plane.seen.append(Seen(self.path, headers, b"", False))
            data = json.dumps(
                {"type": "ServerException", "message": {"message": "the fake has no ACS"}}
            ).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def fake_plane() -> Iterator[FakePlane]:
    ref: list[FakePlane] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(ref))
    server.daemon_threads = True
    plane = FakePlane(server)
    ref.append(plane)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield plane
    server.shutdown()
    server.server_close()


@pytest.fixture
def lab_root(tmp_path: Path) -> Path:
    """A host root with the files the doubles read from a real host."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Debian GNU/Linux"\n')
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def double_env(root: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no AWS credentials or proxies leak in from the test runner."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(root / "root"),
        "ANYWHERE_LAB_DOUBLE_ROOT": str(root),
    }
    env.update(extra)
    return env


def write_ssm_config(root: Path, endpoint: str) -> None:
    cfg = root / "etc/amazon/ssm/amazon-ssm-agent.json"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(json.dumps({"Ssm": {"Endpoint": endpoint}, "Mds": {"Endpoint": endpoint}}))


def run_ssm(
    root: Path,
    *args: str,
    stdin: Any = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(SSM), *args],
        env=env or double_env(root),
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Processes:
    """Long-running doubles started by a test; stopped by PID at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
        fh = log.open("w")
        proc = subprocess.Popen(
            argv, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        fh.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str], timeout: float = 10) -> int:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        return int(proc.returncode)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.stop_all()


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    return wait_for(what, check, timeout, interval=0.05)


@pytest.fixture(scope="session")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if shutil.which("dpkg-deb") is None or shutil.which("gpg") is None:
        pytest.skip("needs dpkg-deb and gpg (apt-get install dpkg gnupg)")
    from anywhere_agent.lab.doubles.packaging import build_repos

    base = tmp_path_factory.mktemp("repos")
    return build_repos(base / "out", signing_home=base / "gnupg")
