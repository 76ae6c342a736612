"""Real lab hosts: three nspawn hosts, each with systemd, sshd, its own identity and no way out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from anywhere_agent.errors import LabError
from anywhere_agent.lab import hosts as hostlib
from anywhere_agent.lab.orchestrator import LAB_SUFFIX_ENV, Lab
from anywhere_agent.lab.state import LabInfo

pytestmark = pytest.mark.lab


def test_every_host_answers_ssh_and_runs_systemd(hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, info = hosts_lab
    assert [h.name for h in info.hosts] == ["n1", "n2", "n3"]
    for h in info.hosts:
        out = lab.ssh(h.name, ["systemctl", "is-system-running"], check=False).stdout.decode()
        assert out.strip() in ("running", "degraded"), h.name
        pid1 = lab.ssh(h.name, ["cat", "/proc/1/comm"]).stdout.decode().strip()
        assert pid1 == "systemd"


def test_every_host_has_its_own_machine_id_and_host_key(hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, info = hosts_lab
    ids = {lab.exec(h.name, ["cat", "/etc/machine-id"]).stdout.strip() for h in info.hosts}
    keys = {
        lab.exec(h.name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).stdout.split()[1]
        for h in info.hosts
    }
    assert len(ids) == 3 and all(len(i) == 32 for i in ids)
    assert len(keys) == 3


def test_hosts_have_no_route_beyond_the_lab_subnet(hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, info = hosts_lab
    for h in info.hosts:
        routes = lab.exec(h.name, ["ip", "-4", "route"]).stdout.decode().strip().splitlines()
        assert len(routes) == 1 and routes[0].startswith(info.subnet.replace("/24", "/24 dev eth0"))
        probe = lab.exec(h.name, ["ip", "route", "get", "1.1.1.1"], check=False)
        assert probe.returncode != 0
        assert b"unreachable" in probe.stderr


def test_hosts_reach_each_other_over_the_lab_subnet(hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, info = hosts_lab
    peer = info.hosts[1].ip
    code = f"import socket; print(socket.create_connection(('{peer}', 22), 3).recv(4))"
    out = lab.ssh("n1", ["python3", "-c", code]).stdout
    assert b"SSH-" in out


def test_apt_sources_point_only_at_the_lab_repo(hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, info = hosts_lab
    listing = lab.exec("n2", ["sh", "-c", "cat /etc/apt/sources.list /etc/apt/sources.list.d/*"])
    lines = [ln for ln in listing.stdout.decode().splitlines()
             if ln.strip() and not ln.startswith("#")]
    server = f"http://{info.gateway}:8080/"
    # The lab's own repo, and Debian only through the lab's caching proxy on the same server.
    assert f"deb [trusted=yes] {server}apt ./" in lines
    debian = [ln for ln in lines if ln.startswith(f"deb {server}debian/")]
    assert debian and set(lines) == {f"deb [trusted=yes] {server}apt ./", *debian}


def test_dependency_venv_loads_build_machine_wheels_on_debian_python(
    hosts_lab: tuple[Lab, LabInfo],
) -> None:
    lab, _ = hosts_lab
    code = "import boto3, psutil, requests, typer, tenacity, systemd.journal; print('ok')"
    out = lab.ssh("n3", ["/opt/anywhere-agent/venv/bin/python", "-c", code]).stdout
    assert out == b"ok\n"


def test_copy_in_reaches_paths_on_the_hosts_own_tmpfs(
    hosts_lab: tuple[Lab, LabInfo], tmp_path: object
) -> None:
    lab, _ = hosts_lab
    from pathlib import Path

    local = Path(str(tmp_path)) / "f.txt"
    local.write_text("hello lab\n")
    lab.copy_in("n1", local, "/run/lab-test/f.txt", mode=0o600)
    assert lab.ssh("n1", ["cat", "/run/lab-test/f.txt"]).stdout == b"hello lab\n"
    assert lab.exec("n1", ["stat", "-c", "%a", "/run/lab-test/f.txt"]).stdout.strip() == b"600"


def test_host_faults_switch_marker_files_on_and_off(hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, _ = hosts_lab
    lab.fault("ecs-hang", hosts=["n2"])
    assert hostlib.faults(lab.host("n2")) == ["ecs-hang"]
    assert hostlib.faults(lab.host("n1")) == []
    lab.fault("ecs-hang", hosts=["n2"], on=False)
    assert hostlib.faults(lab.host("n2")) == []
    with pytest.raises(LabError, match="unknown fault"):
        lab.fault("disk-full")


def test_status_reports_each_host_running_with_its_memory(hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, _ = hosts_lab
    status = lab.status()
    assert status["state"] == "up"
    assert [h["name"] for h in status["hosts"]] == ["n1", "n2", "n3"]
    for row in status["hosts"]:
        assert row["running"] and row["ssh"]
        assert row["systemd"] in ("running", "degraded")
        assert 0 < row["pss_kib"] <= row["rss_kib"]


def test_inventory_names_every_host_with_its_address(hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, info = hosts_lab
    text = lab.inventory()
    for h in info.hosts:
        assert f"{h.name} ansible_host={h.ip}" in text
    assert f"ansible_ssh_private_key_file={info.ssh_key}" in text


def test_a_second_lab_coexists_on_its_own_subnet(hosts_lab: tuple[Lab, LabInfo]) -> None:
    _, info = hosts_lab
    other = Lab("hostpeer")
    try:
        peer = other.up(1, control_plane=False, packages=False)
        assert peer.subnet != info.subnet
        assert other.ssh("n1", ["hostname"]).stdout.strip() == f"{other.name}-n1".encode()
    finally:
        other.down()
    assert not any(other.leftovers().values())


def test_install_product_puts_anywhere_agent_in_the_venv_and_on_path(
    hosts_lab: tuple[Lab, LabInfo],
) -> None:
    lab, _ = hosts_lab
    version = lab.install_product("n1")
    assert version != "unknown"
    out = lab.ssh("n1", ["readlink", "/usr/local/bin/anywhere-agent"]).stdout.decode().strip()
    assert out == "/opt/anywhere-agent/venv/bin/anywhere-agent"
    code = "import anywhere_agent, sys; print(anywhere_agent.__file__)"
    where = lab.ssh("n1", ["/opt/anywhere-agent/venv/bin/python", "-c", code]).stdout.decode()
    assert where.startswith("/opt/anywhere-agent/venv/lib/python3.11/site-packages/")


def test_hosts_see_the_lab_apt_repo_and_control_plane_on_the_gateway(
    hosts_lab: tuple[Lab, LabInfo],
) -> None:
    lab, info = hosts_lab
    if not (info.package_url and info.control_plane_url):
        pytest.skip("control plane or agent-double packages not available in this checkout")
    lab.ssh("n2", ["apt-get", "update", "-qq"])
    # Each agent comes from the lab's repo (which holds two versions of each, for pins).
    for package in ("amazon-ssm-agent", "amazon-ecs-init"):
        policy = lab.ssh("n2", ["apt-cache", "policy", package])
        assert f"http://{info.gateway}:8080/apt ./ Packages".encode() in policy.stdout, package
    url = f"{info.control_plane_url}/_lab/state"
    code = f"import urllib.request as u; print(u.urlopen('{url}').status)"
    assert lab.ssh("n2", ["python3", "-c", code]).stdout == b"200\n"


def test_up_refuses_to_replace_a_running_lab(hosts_lab: tuple[Lab, LabInfo]) -> None:
    lab, _ = hosts_lab
    # The same name as an operator would type it ($ANYWHERE_LAB_SUFFIX is added again).
    typed = lab.name.removesuffix(os.environ.get(LAB_SUFFIX_ENV, ""))
    with pytest.raises(LabError, match="already up"):
        Lab(typed).up(1)
    assert lab.status()["state"] == "up"


def test_lab_install_command_puts_the_checkout_on_the_named_host_only(
    hosts_lab: tuple[Lab, LabInfo],
) -> None:
    lab, _ = hosts_lab
    typed = lab.name.removesuffix(os.environ.get(LAB_SUFFIX_ENV, ""))
    proc = subprocess.run(
        [sys.executable, "-m", "anywhere_agent", "lab", "install", "n3", "--name", typed],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    header, *rows = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    assert header == ["host", "version"] and len(rows) == 1 and rows[0][0] == "n3", proc.stdout
    shown = lab.ssh("n3", ["/opt/anywhere-agent/venv/bin/pip", "show", "anywhere-agent"])
    assert f"Version: {rows[0][1]}" in shown.stdout.decode()
