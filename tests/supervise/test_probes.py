"""Each probe against real loopback servers and files under a temp root."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from anywhere_agent.config import Config, SuperviseConfig
from anywhere_agent.health.model import Check, Status
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host
from anywhere_agent.supervise.escalate import Escalator
from anywhere_agent.supervise.probes import (
    CredentialsProbe,
    DockerPingProbe,
    IntrospectionProbe,
    PressureProbe,
    UnitProbe,
    default_probes,
)

if TYPE_CHECKING:
    from conftest import Node


class FakeIntrospection(BaseHTTPRequestHandler):
    body: Any = {}
    delay = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        data = json.dumps(self.body).encode()
        self.send_response(200 if self.path == "/v1/metadata" else 404)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def introspection() -> Iterator[tuple[str, type[FakeIntrospection]]]:
    handler = type("Handler", (FakeIntrospection,), {})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_introspection_is_ok_when_registered_in_the_configured_cluster(introspection) -> None:  # type: ignore[no-untyped-def]
    url, handler = introspection
    handler.body = {"Cluster": "lab", "ContainerInstanceArn": "arn:aws:ecs:us-east-1:1:"
                    "container-instance/lab/abc", "Version": "Amazon ECS Agent - v1.105.1"}
    obs = IntrospectionProbe(url, "lab", 15)()
    assert obs.checks[0].status is Status.OK
    assert obs.facts["container_instance_arn"].endswith("/abc")


@pytest.mark.parametrize("body,reason", [
    ({"Cluster": "lab", "ContainerInstanceArn": None}, "not_registered"),
    ({"Cluster": "other", "ContainerInstanceArn": "arn:x/other/abc"}, "cluster_mismatch"),
    ([1, 2], "bad_answer"),
])
def test_introspection_is_critical_for_each_wrong_answer(introspection, body, reason) -> None:  # type: ignore[no-untyped-def]
    url, handler = introspection
    handler.body = body
    check = IntrospectionProbe(url, "lab", 15)().checks[0]
    assert (check.status, check.reason) == (Status.CRITICAL, reason)


def test_introspection_that_hangs_fails_within_its_timeout(introspection) -> None:  # type: ignore[no-untyped-def]
    url, handler = introspection
    handler.body = {"Cluster": "lab", "ContainerInstanceArn": "arn"}
    handler.delay = 0.5
    started = time.monotonic()
    check = IntrospectionProbe(url, "lab", 15, timeout=0.2)().checks[0]
    assert time.monotonic() - started < 0.45
    assert (check.status, check.reason) == (Status.CRITICAL, "no_answer")
    assert "did not answer in time" in check.summary


def test_introspection_refused_is_no_answer() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check = IntrospectionProbe(f"http://127.0.0.1:{port}", "lab", 15)().checks[0]
    assert check.reason == "no_answer"


@pytest.fixture
def docker_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="aa-docker-"))  # short: AF_UNIX path limit
    (root / "var/run").mkdir(parents=True)
    yield root
    shutil.rmtree(root)


def serve_unix(path: Path, answer: bytes | None) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            if answer is None:
                time.sleep(0.5)  # hung daemon
            else:
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_docker_ping_over_the_unix_socket(docker_root: Path) -> None:
    server = serve_unix(docker_root / "var/run/docker.sock",
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    check = DockerPingProbe(Host(docker_root), 15)().checks[0]
    server.close()
    assert check.status is Status.OK


def test_docker_ping_that_hangs_or_has_no_socket_is_critical(docker_root: Path) -> None:
    check = DockerPingProbe(Host(docker_root), 15, timeout=0.2)().checks[0]
    assert check.status is Status.CRITICAL
    server = serve_unix(docker_root / "var/run/docker.sock", None)
    check = DockerPingProbe(Host(docker_root), 15, timeout=0.2)().checks[0]
    server.close()
    assert (check.status, check.reason) == (Status.CRITICAL, "no_answer")


def test_docker_not_managed_is_reported_as_such_and_never_as_ok(node: Node) -> None:
    check = UnitProbe(node.host, "docker", 15, managed=False,
                      unmanaged_reason="docker_source=none")().checks[0]
    assert check.skipped and check.status is not Status.OK
    assert check.summary == "not installed (docker_source=none)"
    node.systemd.set("docker")
    check = UnitProbe(node.host, "docker", 15, managed=False,
                      unmanaged_reason="docker_source=none")().checks[0]
    assert check.summary == "active but not managed (docker_source=none)"
    names = [p.name for p in default_probes(node.config, node.host, node.clock)]
    assert "docker_ping" not in names


def test_credentials_age_is_ok_then_warning_then_critical(node: Node) -> None:
    probe = CredentialsProbe(node.host, node.clock, 15, warn_age=1800, crit_age=3600)
    assert probe().checks[0].status is Status.OK
    node.clock.advance(1800)
    assert probe().checks[0].status is Status.WARNING
    node.clock.advance(1800)
    check = probe().checks[0]
    assert (check.status, check.reason, check.value) == (Status.CRITICAL, "stale", 3600.0)


def test_credentials_with_a_recorded_expiry_in_the_past_are_expired(node: Node) -> None:
    path = node.host.path(agent_files.HOST_CREDENTIALS)
    path.write_text("[default]\naws_access_key_id = AKIAFAKE\n"
                    "aws_secret_access_key = SECRETVALUE\n")
    os.utime(path, (node.clock.wall, node.clock.wall))
    # The SSM agent records the expiry beside the file it wrote, not in it.
    node.host.write_atomic("/var/lib/amazon/ssm/runtimeconfig/identity_config.json",
                           '{"CredentialsExpiresAt": "2027-01-15T08:00:00Z", '
                           '"IdentityType": "OnPrem", "CredentialSource": "SSM"}', 0o600)
    check = CredentialsProbe(node.host, node.clock, 15)().checks[0]
    # WALL_START is exactly 2027-01-15T08:00Z: the recorded expiry has just passed.
    assert (check.status, check.reason) == (Status.CRITICAL, "expired")
    assert "SECRETVALUE" not in repr(check)


def test_pressure_measures_filesystems_under_the_host_root_against_thresholds(
        node: Node) -> None:
    cfg = Config(supervise=SuperviseConfig(disk_warn_percent=0.0, disk_crit_percent=100.0,
                                           load_warn_per_cpu=1.0))
    probe = PressureProbe(node.host, cfg, 15, memory_percent=lambda: 98.0,
                          loadavg=lambda: (3.0, 0, 0), cpu_count=lambda: 2)
    checks = {c.name: c for c in probe().checks}
    st = os.statvfs(node.root)
    expected = round(100.0 * (st.f_blocks - st.f_bfree)
                     / (st.f_blocks - st.f_bfree + st.f_bavail), 1)
    assert checks["disk_root"].value == pytest.approx(expected, abs=0.2)
    assert checks["disk_root"].status is Status.WARNING
    assert checks["memory"].status is Status.CRITICAL
    assert (checks["load"].value, checks["load"].status) == (1.5, Status.WARNING)


def test_escalation_reports_warning_until_the_failure_lasted_n_probes() -> None:
    esc = Escalator(3)
    bad = Check("x", Status.CRITICAL, "down", reason="no_answer")
    assert [esc.observe(bad).status for _ in range(4)] == [
        Status.WARNING, Status.WARNING, Status.CRITICAL, Status.CRITICAL]
    assert esc.observe(Check("x", Status.OK, "up")).failing_for == 0
    assert esc.observe(bad).status is Status.WARNING


def test_one_round_asks_the_ecs_agents_introspection_once(tmp_path: Path) -> None:
    """The ACS session probe reuses the introspection probe's answer of the same round."""
    from anywhere_agent.supervise.acs_session import AcsSessionProbe
    from anywhere_agent.supervise.clock import SystemClock
    from anywhere_agent.supervise.probes import IntrospectionProbe, default_probes

    asked: list[str] = []

    def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        asked.append(url)
        return 200, json.dumps({"Cluster": "prod", "ContainerInstanceArn": "arn:x"}).encode()

    probes = default_probes(Config(cluster="prod"), Host(tmp_path), SystemClock(), fetch=fetch)
    [introspection] = [p for p in probes if isinstance(p, IntrospectionProbe)]
    [acs] = [p for p in probes if isinstance(p, AcsSessionProbe)]
    assert probes.index(introspection) < probes.index(acs)
    introspection()
    acs()
    assert len(asked) == 1
