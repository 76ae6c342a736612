"""registrar fleet: one row per host joining SSM and ECS, flags, summary, pagination minimum."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from anywhere_agent.errors import ExitCode
from anywhere_agent.lab.rollout import lab_client
from anywhere_agent.registrar.fleet import HEALTH_ATTRIBUTE, join


def _by_id(doc):
    return {h["instance_id"]: h for h in doc["hosts"]}


def test_fleet_joins_ssm_and_ecs_on_the_mi_id_and_flags_each_kind_of_problem(
        cli, clients, lab):
    healthy = lab.admin.seed(3, cluster="prod")  # seed-0..2
    only_ssm = lab.admin.seed(1)  # seed-0 again: a duplicate computer name, and not in ECS
    gone = lab.admin.seed(1, cluster="prod")  # seed-0 a third time; SSM side deregistered next
    clients.client("ssm").deregister_managed_instance(InstanceId=gone.instance_ids[0])
    stale = lab.seed_stale(1, "prod", days=2)  # seed-0 yet again
    # The host's reporting writes this attribute; here the lab's root key plays the host.
    lab_client(lab.url, "ecs", "us-east-1").put_attributes(cluster="prod", attributes=[{
        "name": HEALTH_ATTRIBUTE, "value": "OK",
        "targetType": "container-instance", "targetId": healthy.container_instance_arns[1]}])

    result = cli("fleet", "--json")  # every cluster: SSM-only hosts are listed too
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    hosts = _by_id(doc)
    assert len(doc["hosts"]) == 6

    good = hosts[healthy.instance_ids[1]]
    assert good["name"] == "seed-1"
    assert good["ping_status"] == "Online" and good["ping_age_s"] < 60
    assert good["agent_version"] == "3.3.1611.0"
    assert good["ecs_agent_version"] == "1.105.1"
    assert good["container_instance_status"] == "ACTIVE"
    assert good["agent_connected"] is True
    assert good["running_tasks"] == 0
    assert good["health"] == "OK"
    assert good["cluster"] == "prod"
    assert good["flags"] == []

    assert hosts[only_ssm.instance_ids[0]]["flags"] == ["ssm_only", "duplicate"]
    assert hosts[healthy.instance_ids[0]]["flags"] == ["duplicate"]
    assert hosts[gone.instance_ids[0]]["flags"] == ["ecs_only"]
    assert hosts[gone.instance_ids[0]]["ping_status"] is None
    offline = hosts[stale.instance_ids[0]]
    assert offline["ping_status"] == "ConnectionLost"
    assert offline["flags"] == ["duplicate", "offline"]
    assert offline["agent_connected"] is False

    assert doc["summary"] == {"hosts": 6, "online": 4, "active": 5, "connected": 4,
                              "ssm_only": 1, "ecs_only": 1, "duplicate": 3, "offline": 1}


def test_fleet_text_output_is_a_table_and_a_summary_line(cli, lab):
    lab.admin.seed(2, cluster="prod")
    result = cli("fleet", "--cluster", "prod")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "instance_id", "ping_status"]
    assert lines[-1].startswith("2 hosts: 2 online, 2 active, 2 connected; 0 ssm_only")


def test_fleet_threshold_decides_who_counts_as_offline(cli, lab):
    lab.seed_stale(1, "prod", days=0.5)  # 12 h without a ping
    assert cli("fleet", "--json").json()["summary"]["offline"] == 1  # default 1h
    assert cli("fleet", "--json", "--offline-after", "1d").json()["summary"]["offline"] == 0


def test_fleet_without_cluster_reads_every_cluster(cli, lab):
    a = lab.admin.seed(2, cluster="east")
    b = lab.admin.seed(1, cluster="west")
    doc = cli("fleet", "--json").json()
    assert sorted(doc["clusters"]) == ["east", "west"]
    hosts = _by_id(doc)
    assert {hosts[i]["cluster"] for i in a.instance_ids} == {"east"}
    assert hosts[b.instance_ids[0]]["cluster"] == "west"
    assert doc["summary"]["ssm_only"] == 0


def test_fleet_on_an_unknown_cluster_is_one_line_exit_6(cli, lab):
    result = cli("fleet", "--cluster", "nope")
    assert result.exit_code == ExitCode.CLOUD
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ECS cluster nope not found" in lines[0]
    as_json = cli("fleet", "--cluster", "nope", "--json")
    assert as_json.exit_code == ExitCode.CLOUD
    assert as_json.json()["exit_code"] == ExitCode.CLOUD


def test_fleet_of_5000_hosts_makes_exactly_the_pagination_minimum_of_calls(cli, lab):
    n = 5000
    lab.admin.seed(n, cluster="big")
    lab.admin.reset_calls()
    # How long it takes is a benchmark (bench/bench_fleet.py), not a test on a shared machine.
    result = cli("fleet", "--cluster", "big", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["summary"]["hosts"] == n
    calls = lab.admin.calls()
    assert calls.count("ssm", "DescribeInstanceInformation") == math.ceil(n / 50)
    assert calls.count("ecs", "ListContainerInstances") == math.ceil(n / 100)
    assert calls.count("ecs", "DescribeContainerInstances") == math.ceil(n / 100)
    assert calls.count("ecs", "DescribeClusters") == 1
    assert calls.count("ssm") + calls.count("ecs") == 201  # nothing else


def test_join_is_pure_and_flags_offline_only_past_the_threshold():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    ssm = [{"InstanceId": "mi-1", "ComputerName": "a", "PingStatus": "ConnectionLost",
            "LastPingDateTime": now - timedelta(minutes=30)},
           {"InstanceId": "mi-2", "ComputerName": "b", "PingStatus": "ConnectionLost",
            "LastPingDateTime": now - timedelta(hours=3)},
           {"InstanceId": "i-0abc", "ComputerName": "ec2"}]
    ecs = [("arn:aws:ecs:r:1:cluster/c", {"ec2InstanceId": "mi-1", "status": "ACTIVE",
                                           "containerInstanceArn": "arn:ci/1",
                                           "agentConnected": True}),
           ("arn:aws:ecs:r:1:cluster/c", {"ec2InstanceId": "i-0abc", "status": "ACTIVE",
                                           "containerInstanceArn": "arn:ci/2"})]
    hosts = {h.instance_id: h for h in join(
        [s for s in ssm if s["InstanceId"].startswith("mi-")], ecs, timedelta(hours=1), now)}
    assert set(hosts) == {"mi-1", "mi-2"}  # EC2 container instances are not ours to show
    assert hosts["mi-1"].flags == []
    assert hosts["mi-2"].flags == ["ssm_only", "offline"]
    assert hosts["mi-2"].ping_age_s == 3 * 3600
