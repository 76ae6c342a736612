"""registrar inventory --format ansible: groups from the fleet view, addresses as SSM reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anywhere_agent.errors import ExitCode

FLEET_SH = Path(__file__).resolve().parents[2] / "ansible" / "inventory" / "fleet.sh"
BIN = Path(sys.executable).parent


def _seed_mixed(lab, clients):
    """prod: 3 hosts (one DRAINING), test: 1 host, 1 SSM-only, 1 stale, 1 in two identities."""
    prod = lab.admin.seed(3, cluster="prod", name_prefix="p")
    test = lab.admin.seed(1, cluster="test", name_prefix="t")
    lonely = lab.admin.seed(1, name_prefix="u")
    stale = lab.seed_stale(1, "prod", days=2)  # seed-0, ConnectionLost
    clone = lab.admin.seed(1, cluster="test", name_prefix="seed")  # seed-0 again: duplicate
    clients.client("ecs").update_container_instances_state(
        cluster="prod", containerInstances=[prod.container_instance_arns[2]], status="DRAINING")
    return prod, test, lonely, stale, clone


def test_inventory_groups_hosts_by_cluster_status_flag_and_agent_version(cli, clients, lab):
    prod, _, _, stale, clone = _seed_mixed(lab, clients)
    result = cli("inventory", "--format", "ansible")
    assert result.exit_code == 0, result.stderr
    inv = result.json()
    hosts = inv["_meta"]["hostvars"]

    assert sorted(inv["cluster_prod"]["hosts"]) == sorted(["p-0", "p-1", "p-2",
                                                            f"seed-0_{stale.instance_ids[0]}"])
    assert sorted(inv["cluster_test"]["hosts"]) == sorted(
        ["t-0", f"seed-0_{clone.instance_ids[0]}"])
    assert sorted(inv["ecs_active"]["hosts"]) == sorted(
        ["p-0", "p-1", "t-0", f"seed-0_{stale.instance_ids[0]}",
         f"seed-0_{clone.instance_ids[0]}"])
    assert inv["ecs_draining"]["hosts"] == ["p-2"]
    assert inv["ssm_only"]["hosts"] == ["u-0"]
    assert inv["offline"]["hosts"] == [f"seed-0_{stale.instance_ids[0]}"]
    assert inv["ssm_connectionlost"]["hosts"] == [f"seed-0_{stale.instance_ids[0]}"]
    assert sorted(inv["duplicate"]["hosts"]) == sorted(
        [f"seed-0_{stale.instance_ids[0]}", f"seed-0_{clone.instance_ids[0]}"])
    assert inv["ecs_only"]["hosts"] == []
    assert len(inv["ssm_agent_3_3_1611_0"]["hosts"]) == 7
    assert len(inv["ecs_agent_1_105_1"]["hosts"]) == 6
    assert sorted(inv["anywhere_agent_nodes"]["hosts"]) == sorted(hosts)
    assert set(inv["all"]["children"]) == set(inv) - {"_meta", "all"}

    # The address is the IPAddress SSM reports; the role variables say where AWS has it.
    info = {i["InstanceId"]: i for i in clients.client("ssm").describe_instance_information()[
        "InstanceInformationList"]}
    p1 = hosts["p-1"]
    assert p1["ansible_host"] == info[prod.instance_ids[1]]["IPAddress"]
    assert p1["ecs_anywhere_node_region"] == "us-east-1"
    assert p1["ecs_anywhere_node_cluster"] == "prod"
    assert p1["anywhere_agent_fleet"]["instance_id"] == prod.instance_ids[1]
    assert p1["anywhere_agent_fleet"]["container_instance_status"] == "ACTIVE"
    assert "ecs_anywhere_node_cluster" not in hosts["u-0"]


def test_inventory_lists_an_identity_gone_from_ssm_only_as_ecs_only(cli, clients, lab):
    gone = lab.admin.seed(1, cluster="prod", name_prefix="g")
    clients.client("ssm").deregister_managed_instance(InstanceId=gone.instance_ids[0])
    inv = cli("inventory", "--format", "ansible").json()
    mi = gone.instance_ids[0]
    assert inv["ecs_only"]["hosts"] == [mi]
    assert inv["anywhere_agent_nodes"]["hosts"] == []  # no address to reach it by
    assert "cluster_prod" not in inv
    assert "ansible_host" not in inv["_meta"]["hostvars"][mi]


def test_inventory_refuses_an_unknown_format_with_exit_2(cli, lab):
    result = cli("inventory", "--format", "yaml")
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == "" and "--format 'yaml' is not supported" in result.stderr


def test_ansible_inventory_reads_the_fleet_through_fleet_sh(clients, lab, tmp_path):
    inventory_cmd = BIN / "ansible-inventory"
    if not inventory_cmd.exists():
        pytest.skip("ansible-inventory is not in the venv: pip install -e '.[ansible]'")
    _seed_mixed(lab, clients)
    lab.admin.seed(2, cluster="dc2", region="eu-west-1", name_prefix="w")
    env = {**os.environ, "ANYWHERE_AGENT_CLI": str(BIN / "anywhere-agent"),
           "ANYWHERE_AGENT_INVENTORY_ARGS": "--region us-east-1,eu-west-1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path), "ANSIBLE_HOME": str(tmp_path)}
    listed = subprocess.run([str(inventory_cmd), "-i", str(FLEET_SH), "--list"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "WARNING" not in listed.stderr, listed.stderr
    doc = json.loads(listed.stdout)
    assert sorted(doc["ecs_active"]["hosts"])[:2] == ["p-0", "p-1"]
    assert doc["region_eu_west_1"]["hosts"] == ["w-0", "w-1"]
    assert doc["_meta"]["hostvars"]["w-0"]["ecs_anywhere_node_region"] == "eu-west-1"
    limited = subprocess.run(
        [str(inventory_cmd), "-i", str(FLEET_SH), "--graph", "cluster_prod"], env=env,
        capture_output=True, text=True, timeout=120, check=False)
    assert limited.returncode == 0, limited.stderr
    assert "p-0" in limited.stdout and "w-0" not in limited.stdout
