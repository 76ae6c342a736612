"""Install on real lab hosts fetches the apt index of only the lab repo's list file, never
Debian's (through the lab's proxy): on a host updated before (its Debian lists stay as they
were) and on a host never updated (no Debian list appears); both hosts join."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

CLUSTER = "aptscope"
LAB_LIST = "/etc/apt/sources.list.d/anywhere-lab.list"
LONG_AGO = "946684800"  # 2000-01-01: a full update would fetch every index again


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aaapt").running(2) as lab:
        yield lab


@pytest.fixture(scope="module")
def activation(lab: Lab) -> rollout.LabActivation:
    return rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 4)


def lists(lab: Lab, host: str) -> dict[str, tuple[str, str]]:
    """/var/lib/apt/lists files: name -> (mtime, inode)."""
    out = lab.exec(host, ["find", "/var/lib/apt/lists", "-maxdepth", "1", "-type", "f",
                          "-name", "*_*", "-printf", "%f %T@ %i\n"]).stdout.decode()
    return {name: (mtime, inode) for name, mtime, inode in
            (line.split() for line in out.splitlines())}


def debian_requests(lab: Lab, host: str, since: int) -> list[str]:
    """What `host` asked the lab's Debian proxy for after byte `since` of its log."""
    ip = lab.host(host).ip
    log = (lab.dir / "package-server.log").read_bytes()[since:].decode(errors="replace")
    return [ln for ln in log.splitlines() if f" {ip} " in ln and "/debian/" in ln]


def install(lab: Lab, host: str, activation: rollout.LabActivation) -> dict[str, Any]:
    lab.install_product(host)
    rollout.write_config(lab, host, rollout.node_config(
        lab.control_plane_url(), lab.region, CLUSTER, "none"))
    code, result, err = rollout.install(lab, host, activation)
    assert code == 0, err[-3000:]
    assert result["cloud_verified"] is True
    return result


def test_install_on_a_host_updated_before_fetches_the_lab_repo_and_leaves_debians_lists(
        lab: Lab, activation: rollout.LabActivation) -> None:
    lab.exec("n1", ["apt-get", "update", "-qq"])  # a server in use has fetched its index
    lab.exec("n1", ["find", "/var/lib/apt/lists", "-maxdepth", "1", "-type", "f", "-name", "*_*",
                    "-exec", "touch", "-d", f"@{LONG_AGO}", "{}", "+"])
    before = lists(lab, "n1")
    debian = {n for n in before if "_debian" in n}
    ours = set(before) - debian
    assert debian and ours, before
    log_at = (lab.dir / "package-server.log").stat().st_size

    result = install(lab, "n1", activation)

    after = lists(lab, "n1")
    assert {n: after.get(n) for n in debian} == {n: before[n] for n in debian}
    assert any(after[n] != before[n] for n in ours), (before, after)
    assert debian_requests(lab, "n1", log_at) == []
    assert result["package_index"] == [{
        "scope": "sources", "source_files": [LAB_LIST],
        "packages": ["amazon-ssm-agent", "amazon-ecs-init"], "reason": ""}]
    assert f"refreshed the index of {LAB_LIST} only (offering amazon-ssm-agent, " \
           "amazon-ecs-init)" in result["notes"]


def test_install_on_a_host_never_updated_fetches_only_the_lab_repo(
        lab: Lab, activation: rollout.LabActivation) -> None:
    assert lists(lab, "n2") == {}
    log_at = (lab.dir / "package-server.log").stat().st_size

    result = install(lab, "n2", activation)

    fetched = lists(lab, "n2")
    assert fetched and not any("_debian" in n for n in fetched), fetched
    assert debian_requests(lab, "n2", log_at) == []
    assert result["package_index"] == [{
        "scope": "sources", "source_files": [LAB_LIST],
        "packages": ["amazon-ssm-agent", "amazon-ecs-init"],
        "reason": "no source fetched before offers them"}]
