"""README command one, as a newcomer runs it: `lab demo` joins 3 hosts, `lab down` cleans up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

NAME = "aademo"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anywhere_agent", "lab", *args],
                          capture_output=True, text=True, timeout=600, check=False)


def test_demo_joins_three_hosts_and_down_leaves_nothing_behind() -> None:
    try:
        proc = cli("demo", "--hosts", "3", "--name", NAME, "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        data = json.loads(proc.stdout)
        fleet = data["fleet"]
        assert len(fleet) == 3
        assert all(row["ping"] == "Online" and row["ecs_status"] == "ACTIVE"
                   and row["connected"] is True for row in fleet), fleet
        assert len({row["managed_instance"] for row in fleet}) == 3
        assert all(line.startswith("ANYWHERE-AGENT OK") for line in data["health"].values())
        status = json.loads(cli("status", "--name", NAME, "--json").stdout)
        assert status["state"] == "up" and len(status["hosts"]) == 3
    finally:
        down = cli("down", "--name", NAME)
    assert down.returncode == 0, down.stderr
    leftovers = Lab(name=NAME).leftovers()
    assert not any(leftovers.values()), leftovers
    assert NAME not in subprocess.run(["ip", "netns"], capture_output=True,
                                      text=True).stdout
