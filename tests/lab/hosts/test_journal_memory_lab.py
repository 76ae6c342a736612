"""A lab host's journald keeps its journal files small, so an idle host maps little of them,
and the journal still records and reads back as on any Debian host."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from anywhere_agent.lab.hosts import container_pids
from anywhere_agent.lab.orchestrator import Lab
from anywhere_agent.lab.state import LabInfo
from anywhere_agent.lab.system import ProcessRef

pytestmark = pytest.mark.lab


def journald_journal_pss_kib(leader: ProcessRef) -> int:
    """PSS of the journal files journald of this PID namespace maps."""
    for pid in container_pids(leader):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "systemd-journal":
                continue
            total, mapped = 0, ""
            for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
                head = line.split()
                if "-" in head[0] and len(head) >= 5:
                    mapped = head[5] if len(head) > 5 else ""
                elif head[0] == "Pss:" and mapped.endswith(".journal"):
                    total += int(head[1])
            return total
        except OSError:
            continue
    raise AssertionError("no journald in the host")


def test_an_idle_hosts_journald_maps_under_1_mib_of_journal_and_still_records(
        hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, _info = hosts_lab
    for host in lab.hosts():
        assert host.leader is not None
        # The default (128 MiB files on the build machine's disk) mapped ~3.6 MiB here.
        assert journald_journal_pss_kib(host.leader) < 1024, host.name
    config = lab.exec("n1", ["systemd-analyze", "cat-config", "systemd/journald.conf"])
    assert b"SystemMaxFileSize=8M" in config.stdout
    marker = f"anywhere-lab-journal-check-{time.time_ns()}"
    lab.exec("n1", ["logger", "-t", "labcheck", marker])
    for _ in range(50):
        out = lab.exec("n1", ["journalctl", "-t", "labcheck", "--no-pager", "-o", "cat"],
                       check=False).stdout.decode()
        if marker in out:
            break
        time.sleep(0.1)
    assert marker in out
