"""`health` as a monitoring user (not root) on a lab host, in each format, agent.toml 0600."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

HOST = "n1"
USER = "nagios"
AGENT_TOML = "/etc/anywhere-agent/agent.toml"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aahealth").running(1) as lab:
        results = rollout.roll_out(lab, "mon")
        assert results[HOST]["exit_code"] == 0, results[HOST]["stderr_tail"]
        lab.exec(HOST, ["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER])
        yield lab


def as_user(lab: Lab, *args: str) -> subprocess.CompletedProcess[bytes]:
    return lab.exec(HOST, ["runuser", "-u", USER, "--", *args], check=False)


def health(lab: Lab, fmt: str) -> tuple[int, str]:
    proc = as_user(lab, "anywhere-agent", "health", "--format", fmt)
    return proc.returncode, proc.stdout.decode() + proc.stderr.decode()


# The lab machine is shared and often loaded, so the node may well read WARNING (load per
# CPU); what matters is that the monitoring user gets a real verdict, never UNKNOWN.
JUDGED = (0, 1, 2)


@pytest.fixture(scope="module")
def healthy(lab: Lab) -> Lab:
    """The supervisor runs and has judged the node (as root: OK, WARNING or CRITICAL)."""
    deadline = time.monotonic() + 180
    while (root := lab.exec(HOST, ["anywhere-agent", "health"], check=False)).returncode \
            not in JUDGED:
        assert time.monotonic() < deadline, f"no verdict as root: {root.stdout.decode()}"
        time.sleep(1)
    return lab


def test_agent_toml_stays_secret_from_the_monitoring_user(healthy: Lab) -> None:
    st = healthy.exec(HOST, ["stat", "-c", "%a %U", AGENT_TOML]).stdout.decode().split()
    assert st == ["600", "root"]
    denied = as_user(healthy, "cat", AGENT_TOML)
    assert denied.returncode != 0 and b"Permission denied" in denied.stderr


def test_nagios_format_as_a_monitoring_user_is_ok_with_perfdata(healthy: Lab) -> None:
    code, out = health(healthy, "nagios")
    assert code in JUDGED, out
    word = ("OK", "WARNING", "CRITICAL")[code]
    assert out.startswith(f"ANYWHERE-AGENT {word} - ") and "|" in out, out
    assert "configuration" not in out and "cannot read" not in out


def test_json_format_as_a_monitoring_user_carries_every_check(healthy: Lab) -> None:
    code, out = health(healthy, "json")
    assert code in JUDGED, out
    doc = json.loads(out)
    assert doc["status_code"] == code and doc["instance_id"].startswith("mi-")
    names = {c["name"] for c in doc["checks"]}
    assert {"ecs_introspection", "state_age"} <= names, names


def test_prometheus_format_as_a_monitoring_user_passes_promtool(healthy: Lab) -> None:
    code, out = health(healthy, "prometheus")
    assert code in JUDGED, out
    assert f"anywhere_agent_health_status {code}" in out.splitlines()
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: .ci/apt-deps installs Debian's prometheus package"
    checked = subprocess.run([promtool, "check", "metrics"], input=out.encode(),
                             capture_output=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_stopped_supervisor_is_unknown_for_the_monitoring_user_too(healthy: Lab) -> None:
    healthy.exec(HOST, ["systemctl", "stop", "anywhere-agent"])
    try:
        code, out = health(healthy, "nagios")
        assert code == 3 and out.startswith("ANYWHERE-AGENT UNKNOWN"), out
        assert "supervisor stopped" in out
    finally:
        healthy.exec(HOST, ["systemctl", "start", "anywhere-agent"])


def test_a_read_only_state_directory_is_reported_as_a_write_error(healthy: Lab) -> None:
    state_dir = "/var/lib/anywhere-agent"
    # Read-only as the supervisor sees it: in its own mount namespace (PrivateMounts=yes,
    # StateDirectory is its own bind mount there); a restart gives it a fresh namespace.
    pid = healthy.exec(HOST, ["systemctl", "show", "anywhere-agent", "-p", "MainPID",
                              "--value"]).stdout.decode().strip()
    healthy.exec(HOST, ["nsenter", "-t", pid, "-m", "--", "mount", "-o", "remount,bind,ro",
                        state_dir])
    try:
        deadline = time.monotonic() + 90
        code, out = health(healthy, "nagios")
        while "cannot write its state file" not in out:
            assert time.monotonic() < deadline, out
            time.sleep(1)
            code, out = health(healthy, "nagios")
        assert code == 3 and out.startswith("ANYWHERE-AGENT UNKNOWN"), out
        assert "Read-only file system" in out or "read-only" in out.lower(), out
        assert "not running" not in out
    finally:
        healthy.exec(HOST, ["systemctl", "restart", "anywhere-agent"])
    deadline = time.monotonic() + 90
    while health(healthy, "nagios")[0] not in JUDGED:  # writable again: a verdict again
        assert time.monotonic() < deadline, health(healthy, "nagios")[1]
        time.sleep(1)
