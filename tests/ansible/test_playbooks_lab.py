"""rollout / upgrade / decommission on real systemd lab hosts against the lab control plane.

The tests run in file order on one lab of fresh hosts: check mode, a failed first batch,
the rollout (-vvv), its re-run, upgrade, decommission.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.ansible.conftest import CLUSTER, HOSTS, AnsibleLab, Run

pytestmark = [pytest.mark.lab, pytest.mark.ansible]

NAMES = [f"n{i}" for i in range(1, HOSTS + 1)]


def activations(alab: AnsibleLab) -> list[dict]:
    return list(alab.client("ssm").describe_activations()["ActivationList"])


def on_host(alab: AnsibleLab, host: str, *argv: str) -> tuple[int, str]:
    proc = alab.lab.exec(host, list(argv), check=False)
    return proc.returncode, proc.stdout.decode()


def joined_instances(alab: AnsibleLab) -> dict[str, str]:
    """managed instance ID -> container instance status, for the cluster."""
    ssm, ecs = alab.client("ssm"), alab.client("ecs")
    infos = ssm.describe_instance_information(MaxResults=50)["InstanceInformationList"]
    try:
        arns = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
    except ecs.exceptions.ClusterNotFoundException:
        arns = []
    cis = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)[
        "containerInstances"] if arns else []
    by_mi = {c["ec2InstanceId"]: c["status"] for c in cis}
    return {i["InstanceId"]: by_mi.get(i["InstanceId"], "-") for i in infos}


def nodes_changed(run: Run) -> dict[str, int]:
    return {h: r["changed"] for h, r in run.recap().items()}


class CodeWatcher(threading.Thread):
    """Reads the rollout's activation file the moment it appears (the test's only way to
    learn the code, since the playbook revokes it and deletes the file)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(daemon=True)
        self.tmp, self.codes, self.stop = tmp, set[str](), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for path in self.tmp.glob("anywhere-agent-rollout.*/activation.json"):
                try:
                    doc = json.loads(path.read_text())
                    self.codes |= {a["activation_code"] for a in doc["activations"]}
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.05)


def test_check_mode_reports_changes_and_changes_nothing(ansible_lab: AnsibleLab) -> None:
    run = ansible_lab.run("rollout.yml", "--check")
    assert run.rc == 0, run.output[-4000:]
    changed = nodes_changed(run)
    assert all(changed[h] > 0 for h in NAMES), changed
    for host in NAMES:
        assert on_host(ansible_lab, host, "test", "-e", "/etc/anywhere-agent/agent.toml")[0] == 1
        assert on_host(ansible_lab, host, "test", "-e", "/usr/local/bin/anywhere-agent")[0] == 1
    assert activations(ansible_lab) == []
    assert joined_instances(ansible_lab) == {}
    assert ansible_lab.client("ecs").describe_clusters(clusters=[CLUSTER])["clusters"] == []


def test_failed_first_batch_stops_the_rollout_and_still_revokes(ansible_lab: AnsibleLab,
                                                                 tmp_path: Path) -> None:
    # n1 (the first batch of one) gets a proxy nothing listens on: its preflight fails.
    bad = json.dumps({"https": "http://127.0.0.1:9", "http": "http://127.0.0.1:9"})
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(ansible_lab.inventory.read_text().replace(
        "\nn1 ansible_host", f"\nn1 ecs_anywhere_node_proxy='{bad}' ansible_host", 1))
    run = ansible_lab.run("rollout.yml", inventory=inventory)
    assert run.rc != 0
    recap = run.recap()
    assert recap["n1"]["failed"] == 1, recap
    assert "preflight failed on n1" in run.output
    assert "the rollout stopped: n1 failed" in run.output
    # Later batches never started: n2.. have no agent.toml.
    for host in NAMES[1:]:
        assert on_host(ansible_lab, host, "test", "-e", "/etc/anywhere-agent/agent.toml")[0] == 1
    # One activation was created for the 5 hosts, and it is gone again (DescribeActivations).
    assert "5 of 5 nodes need registering" in run.output
    assert activations(ansible_lab) == []
    assert list(ansible_lab.tmp.glob("anywhere-agent-rollout.*")) == []


def test_rollout_joins_every_host_and_never_shows_the_code(ansible_lab: AnsibleLab) -> None:
    watcher = CodeWatcher(ansible_lab.tmp)
    watcher.start()
    try:
        run = ansible_lab.run("rollout.yml", "-vvv")
    finally:
        watcher.stop.set()
        watcher.join()
    assert run.rc == 0, run.output[-6000:]
    assert watcher.codes, "the test never saw the activation file"
    for code in watcher.codes:
        assert code not in run.output
    joined = joined_instances(ansible_lab)
    assert len(joined) == HOSTS and set(joined.values()) == {"ACTIVE"}, joined
    assert activations(ansible_lab) == []
    assert list(ansible_lab.tmp.glob("anywhere-agent-rollout.*")) == []
    for host in NAMES:
        code, out = on_host(ansible_lab, host, "grep", "-rlF", next(iter(watcher.codes)),
                            "/etc/anywhere-agent", "/var/lib/anywhere-agent")
        assert code == 1, out


def test_second_rollout_reports_no_change_and_creates_no_activation(
        ansible_lab: AnsibleLab) -> None:
    run = ansible_lab.run("rollout.yml")
    assert run.rc == 0, run.output[-4000:]
    assert set(nodes_changed(run).values()) == {0}, run.recap()
    assert "0 of 5 nodes need registering" in run.output
    check = ansible_lab.run("rollout.yml", "--check")
    assert check.rc == 0 and set(nodes_changed(check).values()) == {0}, check.recap()


def test_upgrade_drains_waits_for_tasks_and_restores_active(ansible_lab: AnsibleLab) -> None:
    from anywhere_agent.lab.control_plane.admin import LabAdmin

    admin = LabAdmin(ansible_lab.lab.control_plane_url())
    ecs = ansible_lab.client("ecs")
    arns = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
    for arn in arns:
        admin.set_running_tasks(CLUSTER, arn, running=2, drain_delay_seconds=3)
    admin.reset_calls()
    started = time.monotonic()
    run = ansible_lab.run("upgrade.yml", extra={"upgrade_batches": [1, "50%"],
                                                "ecs_anywhere_node_drain_poll_seconds": 1})
    assert run.rc == 0, run.output[-6000:]
    calls = admin.calls().count("ecs", "UpdateContainerInstancesState")
    assert calls == 2 * HOSTS, calls  # DRAINING then ACTIVE, once per host
    assert time.monotonic() - started >= 3  # the tasks took 3 s to leave the first batch
    cis = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)[
        "containerInstances"]
    assert {c["status"] for c in cis} == {"ACTIVE"}
    assert {c["runningTasksCount"] for c in cis} == {0}


def test_failed_upgrade_restores_active_and_fails(ansible_lab: AnsibleLab) -> None:
    run = ansible_lab.run("upgrade.yml", extra={
        "upgrade_batches": [1], "ecs_anywhere_node_wheel": "/nonexistent/anywhere_agent.whl"})
    assert run.rc != 0
    assert run.recap()["n1"]["failed"] == 1 and "n2" not in run.recap(), run.recap()
    assert "the container instance is\nACTIVE again" in run.output \
        or "container instance is ACTIVE again" in run.output
    ecs = ansible_lab.client("ecs")
    arns = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
    statuses = {c["status"] for c in ecs.describe_container_instances(
        cluster=CLUSTER, containerInstances=arns)["containerInstances"]}
    assert statuses == {"ACTIVE"}


def test_decommission_leaves_nothing_registered(ansible_lab: AnsibleLab) -> None:
    run = ansible_lab.run("decommission.yml")
    assert run.rc == 0, run.output[-6000:]
    assert joined_instances(ansible_lab) == {}
    ecs = ansible_lab.client("ecs")
    assert ecs.list_container_instances(cluster=CLUSTER, status="ACTIVE")[
        "containerInstanceArns"] == []
    for host in NAMES:
        assert on_host(ansible_lab, host, "test", "-e", "/usr/local/bin/anywhere-agent")[0] == 1
