"""The lab admin API: faults, call counters, fleet seeding, state, and running as a process."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import pytest

from anywhere_agent.lab.control_plane.admin import FaultRule, LabAdmin, LabAdminError
from anywhere_agent.lab.control_plane.server import ControlPlane

if TYPE_CHECKING:
    from conftest import Agent


def test_throttling_at_a_rate_is_retried_by_boto3_until_the_call_completes(
    agent: Agent, admin: LabAdmin
) -> None:
    # Seeded, so the same calls fail every run; few enough that backoff stays short.
    admin.set_faults([FaultRule(kind="throttle", service="ssm", rate=0.3)], seed=3)
    patient = agent.client("ssm", retries=10)
    for _ in range(6):
        patient.describe_activations()
    counts = admin.calls()
    assert counts.count("ssm", "DescribeActivations") > 6
    assert counts.faulted["ssm"]["DescribeActivations"] == (
        counts.count("ssm", "DescribeActivations") - 6)


def test_throttling_answers_in_the_real_shape_and_server_errors_with_their_status(
    agent: Agent, admin: LabAdmin
) -> None:
    admin.set_faults([FaultRule(kind="throttle", service="ecs")])
    with pytest.raises(botocore.exceptions.ClientError) as throttled:
        agent.client("ecs").list_clusters()
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    admin.set_faults([FaultRule(kind="5xx", service="iam", status=503)])
    with pytest.raises(botocore.exceptions.ClientError) as unavailable:
        agent.client("iam").list_roles()
    assert unavailable.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    admin.set_faults([FaultRule(kind="5xx", service="ssm", operation="DescribeActivations")])
    with pytest.raises(botocore.exceptions.ClientError) as broken:
        agent.client("ssm").describe_activations()
    assert broken.value.response["Error"]["Code"] == "InternalServerError"
    agent.client("ssm").describe_instance_information()  # another operation is untouched


def test_deny_answers_access_denied_in_each_protocols_shape(
    agent: Agent, admin: LabAdmin
) -> None:
    admin.set_faults([FaultRule(kind="deny", service="ecs", operation="DescribeClusters"),
                      FaultRule(kind="deny", service="iam")])
    with pytest.raises(botocore.exceptions.ClientError) as ecs_denied:
        agent.client("ecs").describe_clusters(clusters=["x"])
    assert ecs_denied.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(botocore.exceptions.ClientError) as iam_denied:
        agent.client("iam").list_roles()
    assert iam_denied.value.response["Error"]["Code"] == "AccessDenied"
    assert iam_denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    agent.client("ecs").list_clusters()  # another operation is untouched


def test_latency_faults_delay_calls_and_never_touch_the_admin_api(
    agent: Agent, admin: LabAdmin
) -> None:
    admin.set_faults([FaultRule(kind="latency", latency_ms=300),
                      FaultRule(kind="5xx", status=500)])
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.ClientError):
        agent.client("ecs").list_clusters()
    assert time.monotonic() - started >= 0.3
    assert admin.state()["faults"]["rules"][0]["kind"] == "latency"
    admin.clear_faults()
    agent.client("ecs").list_clusters()


def test_fault_rules_are_validated(admin: LabAdmin) -> None:
    with pytest.raises(ValueError):
        FaultRule(kind="throttle", rate=1.5)
    with pytest.raises(LabAdminError):
        admin._request("PUT", "/_lab/faults", {"rules": [{"kind": "flood"}]})


def test_call_counters_count_every_aws_call_by_service_and_operation(
    agent: Agent, admin: LabAdmin, role: str
) -> None:
    admin.reset_calls()
    ssm, ecs = agent.client("ssm"), agent.client("ecs")
    ssm.describe_activations()
    ssm.describe_activations()
    ecs.create_cluster(clusterName="edge")
    agent.client("iam").get_role(RoleName=role)
    agent.register("11111111-2222-3333-4444-555555555555", "x" * 20)
    counts = admin.calls()
    assert counts.calls == {
        "ssm": {"DescribeActivations": 2, "RegisterManagedInstance": 1},
        "ecs": {"CreateCluster": 1},
        "iam": {"GetRole": 1},
    }
    admin.reset_calls()
    assert admin.calls().calls == {}


def test_seeding_5000_hosts_is_fast_uncounted_and_pages_at_the_minimum(
    agent: Agent, admin: LabAdmin
) -> None:
    hosts = 5000
    started = time.monotonic()
    seeded = admin.seed(hosts, cluster="fleet")
    assert time.monotonic() - started < 10
    assert len(seeded.instance_ids) == len(seeded.container_instance_arns) == hosts
    assert admin.calls().calls == {}

    ssm, ecs = agent.client("ssm"), agent.client("ecs")
    online = [i for page in ssm.get_paginator("describe_instance_information").paginate(
        PaginationConfig={"PageSize": 50}) for i in page["InstanceInformationList"]]
    arns = [a for page in ecs.get_paginator("list_container_instances").paginate(
        cluster="fleet", PaginationConfig={"PageSize": 100}) for a in page["containerInstanceArns"]]
    described = []
    for start in range(0, len(arns), 100):
        described += ecs.describe_container_instances(
            cluster="fleet", containerInstances=arns[start:start + 100])["containerInstances"]
    assert {i["InstanceId"] for i in online} == set(seeded.instance_ids)
    assert {d["ec2InstanceId"] for d in described} == set(seeded.instance_ids)
    assert all(d["agentConnected"] for d in described)
    counts = admin.calls()
    assert counts.count("ssm", "DescribeInstanceInformation") == math.ceil(hosts / 50)
    assert counts.count("ecs", "ListContainerInstances") == math.ceil(hosts / 100)
    assert counts.count("ecs", "DescribeContainerInstances") == math.ceil(hosts / 100)
    assert time.monotonic() - started < 60


def test_seeded_hosts_can_start_offline_and_disconnected(agent: Agent, admin: LabAdmin) -> None:
    seeded = admin.seed(3, cluster="edge", online=False, agent_connected=False)
    info = agent.client("ssm").describe_instance_information()["InstanceInformationList"]
    assert {i["PingStatus"] for i in info} == {"ConnectionLost"}
    described = agent.client("ecs").describe_container_instances(
        cluster="edge", containerInstances=seeded.container_instance_arns)
    assert not any(d["agentConnected"] for d in described["containerInstances"])


def test_state_summarises_instances_clusters_and_config(admin: LabAdmin) -> None:
    admin.seed(4, cluster="edge")
    admin.configure(ping_timeout=5)
    state = admin.state()
    assert state["ssm"]["managed_instances"] == 4
    assert state["ssm"]["ping_status"] == {"Online": 4}
    assert state["ecs"]["clusters"]["us-east-1/edge"]["agent_connected"] == 4
    assert state["config"]["ping_timeout"] == 5
    admin.advance_clock(6)
    assert admin.state()["ssm"]["ping_status"] == {"ConnectionLost": 4}


def test_unknown_ids_and_routes_are_reported_by_the_admin_client(admin: LabAdmin) -> None:
    with pytest.raises(LabAdminError, match="404"):
        admin.expire_activation("11111111-2222-3333-4444-555555555555")
    with pytest.raises(LabAdminError, match="404"):
        admin.deny_role_tokens("mi-0123456789abcdef0")
    with pytest.raises(LabAdminError, match="404"):
        admin._request("GET", "/_lab/nothing")


def test_only_one_control_plane_runs_per_process(plane: ControlPlane) -> None:
    with pytest.raises(RuntimeError, match="already runs"):
        ControlPlane().start()


def test_the_module_runs_in_the_foreground_until_sigterm(tmp_path: Path) -> None:
    pid_file = tmp_path / "cp.pid"
    process = subprocess.Popen(
        [sys.executable, "-m", "anywhere_agent.lab.control_plane", "--host", "127.0.0.1",
         "--port", "0", "--region", "eu-west-1", "--pid-file", str(pid_file)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("control plane listening on http://127.0.0.1:")
        assert pid_file.read_text().strip() == str(process.pid)
        url = line.rsplit(" ", 1)[1].strip()
        with urllib.request.urlopen(f"{url}/_lab/state", timeout=10) as response:
            assert json.load(response)["region"] == "eu-west-1"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert not pid_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_managed_policies_for_the_host_role_exist(agent: Agent) -> None:
    iam: Any = agent.client("iam")
    for arn in ("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
                "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"):
        assert iam.get_policy(PolicyArn=arn)["Policy"]["Arn"] == arn
