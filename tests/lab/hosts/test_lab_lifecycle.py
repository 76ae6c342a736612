"""Lab lifecycle: down leaves nothing behind, and up after a crash cleans the leftovers first."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from anywhere_agent.lab import network, system
from anywhere_agent.lab.orchestrator import Lab
from anywhere_agent.lab.state import LabState

pytestmark = pytest.mark.lab


def _scan(lab: Lab, pids: list[int]) -> dict[str, list[str]]:
    """Look for the lab's traces the way an operator would: /proc/mounts, ip, processes."""
    mounts = [ln for ln in Path("/proc/mounts").read_text().splitlines() if str(lab.dir) in ln]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    tag = network.iface_tag(lab.name)
    return {
        "mounts": mounts,
        "netns": [ln for ln in netns.splitlines() if ln.startswith(f"{lab.name}-")],
        "interfaces": [ln for ln in links.splitlines() if f" {tag}-" in ln],
        "processes": [str(p) for p in pids if system.start_time(p) is not None],
        "state_dir": [str(lab.dir)] if lab.dir.exists() else [],
        "cgroups": lab.leftovers()["cgroups"],
    }


def _lab_pids(lab: Lab) -> list[int]:
    state = LabState.load(lab.state_file)
    assert state is not None
    pids = [r.pid for r in state.process_refs().values()]
    for host in lab.hosts():
        pids += [r.pid for r in (host.nspawn, host.leader) if r is not None]
    return pids


def test_down_leaves_no_namespaces_mounts_processes_or_interfaces(
    lab_env: None, lab_services: tuple[bool, bool]
) -> None:
    cp, pkg = lab_services
    lab = Lab("downtest")
    lab.up(2, control_plane=cp, packages=pkg)
    pids = _lab_pids(lab)
    before = _scan(lab, pids)
    assert all(before[k] for k in ("mounts", "netns", "interfaces", "processes", "cgroups"))
    report = lab.down()
    assert report["removed"] is True
    after = _scan(lab, pids)
    assert not any(after.values()), after
    # Idempotent: a second down on nothing is fine.
    lab.down()


def test_up_after_a_crash_cleans_leftovers_and_succeeds(
    lab_env: None, lab_services: tuple[bool, bool]
) -> None:
    cp, pkg = lab_services
    lab = Lab("crashtest")
    lab.up(2, control_plane=cp, packages=pkg)
    old = _lab_pids(lab)
    nspawns = [h.nspawn for h in lab.hosts() if h.nspawn is not None]
    for ref in nspawns:  # a crash: nspawn dies, the state file and everything else stay
        os.kill(ref.pid, signal.SIGKILL)
    for ref in nspawns:
        # Blocking: a WNOHANG reap right after SIGKILL can miss it, and a zombie nspawn still
        # has its start time, so the next `up` would take the lab for a running one.
        os.waitpid(ref.pid, 0)
    assert lab.state_file.exists()
    try:
        info = Lab("crashtest").up(2, control_plane=cp, packages=pkg)
        assert [h.name for h in info.hosts] == ["n1", "n2"]
        assert not any(
            system.start_time(p) is not None
            for p in old
            if p not in [h.leader_pid for h in info.hosts]
        )
        assert lab.ssh("n2", ["true"]).returncode == 0
    finally:
        lab.down()
    assert not any(lab.leftovers().values())
