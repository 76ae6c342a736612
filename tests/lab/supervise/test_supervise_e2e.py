"""The supervisor under real systemd on a lab host: READY, hung agent restarted, watchdog."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab
from tests.conftest import wait_for

pytestmark = pytest.mark.lab

HOST = "n1"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aasup").running(1) as lab:
        results = rollout.roll_out(lab, "sup")
        assert results[HOST]["exit_code"] == 0, results[HOST]["stderr_tail"]
        yield lab


def show(lab: Lab, unit: str, prop: str) -> str:
    out = lab.exec(HOST, ["systemctl", "show", unit, "-p", prop, "--value"], check=False)
    return out.stdout.decode().strip()


def health(lab: Lab) -> tuple[int, str]:
    proc = lab.exec(HOST, ["anywhere-agent", "health", "--format", "nagios"], check=False)
    return proc.returncode, proc.stdout.decode()


def test_supervisor_reaches_ready_and_reports_ok(lab: Lab) -> None:
    # Type=notify: systemd says active/running only after READY=1.
    wait_for("anywhere-agent running", lambda: show(lab, "anywhere-agent", "SubState")
             == "running", 60)
    assert show(lab, "anywhere-agent", "Type") == "notify"
    wait_for("health OK", lambda: health(lab)[0] == 0, 60)
    _, line = health(lab)
    assert line.startswith("ANYWHERE-AGENT OK"), line
    assert "|" in line  # performance data


def test_hung_ecs_agent_is_restarted_by_the_supervisor(lab: Lab) -> None:
    pid_before = show(lab, "ecs", "MainPID")
    lab.fault("ecs-hang", hosts=[HOST])
    try:
        # 3 failed probes at a 5 s interval, then a restart: well within a minute.
        wait_for("ecs restarted", lambda: show(lab, "ecs", "MainPID") not in (pid_before, "0"),
                 90)
    finally:
        lab.fault("ecs-hang", on=False, hosts=[HOST])
    wait_for("health OK again", lambda: health(lab)[0] == 0, 90)
    journal = lab.exec(HOST, ["journalctl", "-u", "anywhere-agent", "--no-pager", "-o",
                              "cat"]).stdout.decode()
    assert "restart" in journal.lower()


def test_a_stopped_watchdog_ping_makes_systemd_restart_the_supervisor(lab: Lab) -> None:
    dropin = "/etc/systemd/system/anywhere-agent.service.d/zz-test-watchdog.conf"
    lab.exec(HOST, ["mkdir", "-p", os.path.dirname(dropin)])
    lab.exec(HOST, ["dd", f"of={dropin}", "status=none"],
             input=b"[Service]\nWatchdogSec=6s\n")
    try:
        lab.exec(HOST, ["systemctl", "daemon-reload"])
        lab.exec(HOST, ["systemctl", "restart", "anywhere-agent"])
        wait_for("supervisor running", lambda: show(lab, "anywhere-agent", "SubState")
                 == "running", 60)
        pid = show(lab, "anywhere-agent", "MainPID")
        restarts = int(show(lab, "anywhere-agent", "NRestarts") or 0)
        lab.exec(HOST, ["kill", "-STOP", pid])
        wait_for("watchdog restart", lambda: int(show(lab, "anywhere-agent", "NRestarts")
                                                 or 0) > restarts, 60)
        wait_for("supervisor running again", lambda: show(lab, "anywhere-agent", "SubState")
                 == "running" and show(lab, "anywhere-agent", "MainPID") != pid, 60)
        log = lab.exec(HOST, ["journalctl", "-u", "anywhere-agent", "--no-pager"]).stdout
        assert b"watchdog" in log.lower()
    finally:
        lab.exec(HOST, ["rm", "-f", dropin])
        lab.exec(HOST, ["systemctl", "daemon-reload"])
