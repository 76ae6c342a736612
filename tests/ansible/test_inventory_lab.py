"""The fleet inventory drives a playbook: on 5 joined lab hosts, `upgrade.yml --limit
ecs_active` with `-i inventory/fleet.sh` upgrades exactly the hosts ECS has ACTIVE, reaching
each at the address SSM reports."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ansible.conftest import (
    ANSIBLE_DIR,
    BIN,
    CLUSTER,
    HOSTS,
    AnsibleLab,
    lab_for_ansible,
    rolled_out,
    run_playbook,
)

pytestmark = [pytest.mark.lab, pytest.mark.ansible]

FLEET_SH = ANSIBLE_DIR / "inventory" / "fleet.sh"


@pytest.fixture(scope="module")
def joined_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnsibleLab]:
    """A lab of our own with every host joined by rollout.yml (static inventory)."""
    with lab_for_ansible("aainv", HOSTS, tmp_path_factory.mktemp("inventory-lab")) as alab:
        yield rolled_out(alab, rollout_batches=["100%"])


def connection_vars(alab: AnsibleLab, path: Path) -> Path:
    """The lab's SSH settings alone (no hosts): the fleet inventory brings the hosts."""
    text = alab.inventory.read_text()
    settings = text[text.index(":vars]") + len(":vars]"):]
    path.write_text("[all:vars]" + settings)
    return path


def test_fleet_inventory_drives_upgrade_limited_to_the_ecs_active_group(
        joined_lab: AnsibleLab, tmp_path: Path) -> None:
    from anywhere_agent.lab.control_plane.admin import LabAdmin

    alab = joined_lab
    url = alab.lab.control_plane_url()
    # The registrar's own IAM user (iam/registrar.json), as the controller runs it.
    env = {**alab.extra["ecs_anywhere_node_controller_environment"],
           "ANYWHERE_AGENT_CLI": str(BIN / "anywhere-agent"),
           "ANYWHERE_AGENT_INVENTORY_ARGS": f"--cluster {CLUSTER}"}
    ecs = alab.client("ecs")
    cis = ecs.describe_container_instances(
        cluster=CLUSTER, containerInstances=ecs.list_container_instances(
            cluster=CLUSTER)["containerInstanceArns"])["containerInstances"]
    assert len(cis) == HOSTS
    drained = cis[-1]
    ecs.update_container_instances_state(cluster=CLUSTER, status="DRAINING",
                                         containerInstances=[drained["containerInstanceArn"]])

    listed = subprocess.run([str(FLEET_SH), "--list"], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    inv = json.loads(listed.stdout)
    by_mi = {v["anywhere_agent_fleet"]["instance_id"]: name
             for name, v in inv["_meta"]["hostvars"].items()}
    active = sorted(by_mi[c["ec2InstanceId"]] for c in cis[:-1])
    assert sorted(inv["ecs_active"]["hosts"]) == active
    assert inv["ecs_draining"]["hosts"] == [by_mi[drained["ec2InstanceId"]]]
    # Addresses as SSM reports them: each is a lab host's own address.
    lab_ips = {h.ip for h in alab.lab.hosts()}
    assert {v["ansible_host"] for v in inv["_meta"]["hostvars"].values()} == lab_ips

    admin = LabAdmin(url)
    admin.reset_calls()
    connection = connection_vars(alab, tmp_path / "connection.ini")
    run = run_playbook(
        "upgrade.yml", FLEET_SH, {**alab.extra, "rollout_hosts": "anywhere_agent_nodes",
                                  "upgrade_batches": ["100%"]},
        "-i", str(connection), "--limit", "ecs_active",
        env={**env, "TMPDIR": str(alab.tmp)})
    assert run.rc == 0, run.output[-6000:]
    assert sorted(run.recap()) == sorted([*active, "localhost"]) or \
        sorted(run.recap()) == active, run.recap()
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap().values())
    # Drained and set ACTIVE again: two state changes per upgraded host, none for the other.
    assert admin.calls().count("ecs", "UpdateContainerInstancesState") == 2 * len(active)
    after = {c["ec2InstanceId"]: c["status"] for c in ecs.describe_container_instances(
        cluster=CLUSTER, containerInstances=[c["containerInstanceArn"] for c in cis])[
        "containerInstances"]}
    assert after.pop(drained["ec2InstanceId"]) == "DRAINING"
    assert set(after.values()) == {"ACTIVE"}
