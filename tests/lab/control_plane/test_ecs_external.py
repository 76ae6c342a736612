"""ECS Anywhere container instances as the ECS agent, the registrar and Ansible see them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import pytest

from anywhere_agent.lab.control_plane.admin import LabAdmin
from anywhere_agent.lab.control_plane.server import ControlPlane

if TYPE_CHECKING:
    from conftest import Agent, Host


@pytest.fixture
def cluster(ecs: Any) -> str:
    ecs.create_cluster(clusterName="edge")
    return "edge"


def attributes(instance: dict[str, Any]) -> dict[str, Any]:
    return {a["name"]: a.get("value") for a in instance["attributes"]}


def test_agent_registration_uses_the_managed_instance_id_and_echoes_its_attributes(
    plane: ControlPlane, host: Host, cluster: str, agent: Agent) -> None:
    instance = agent.register_container_instance(host.ecs(), cluster,
                                           tags=[{"key": "rack", "value": "r7"}])
    assert instance["ec2InstanceId"] == host.instance_id
    assert instance["status"] == "ACTIVE"
    # On AWS an instance is connected only once its agent's ACS session is up.
    assert instance["agentConnected"] is False
    assert instance["tags"] == [{"key": "rack", "value": "r7"}]
    echoed = attributes(instance)
    for sent in agent.attributes:
        assert echoed[sent["name"]] == sent.get("value")
    assert "ecs.capability.external" in echoed
    cpu = [r for r in instance["registeredResources"] if r["name"] == "CPU"]
    assert cpu[0]["integerValue"] == 2048


def test_registration_into_a_missing_cluster_is_cluster_not_found(
    plane: ControlPlane, host: Host, agent: Agent) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        agent.register_container_instance(host.ecs(), "nowhere")
    assert excinfo.value.response["Error"]["Code"] == "ClusterNotFoundException"


def test_registration_without_managed_instance_credentials_is_refused(
    ecs: Any, cluster: str, agent: Agent) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        agent.register_container_instance(ecs, cluster)
    assert excinfo.value.response["Error"]["Code"] == "ClientException"


def test_re_registration_with_the_known_arn_keeps_the_arn(
    plane: ControlPlane, host: Host, cluster: str, ecs: Any, agent: Agent) -> None:
    agent_ecs = host.ecs()
    first = agent.register_container_instance(agent_ecs, cluster)
    again = agent.register_container_instance(agent_ecs, cluster,
                                        containerInstanceArn=first["containerInstanceArn"])
    assert again["containerInstanceArn"] == first["containerInstanceArn"]
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == [
        first["containerInstanceArn"]]


def test_discover_poll_endpoint_names_acs_and_tcs_and_connects_nobody(
    plane: ControlPlane, host: Host, cluster: str, ecs: Any, admin: LabAdmin, agent: Agent) -> None:
    agent_ecs = host.ecs()
    arn = agent.register_container_instance(agent_ecs, cluster)["containerInstanceArn"]

    def described() -> dict[str, Any]:
        answer = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn],
                                                  include=["CONTAINER_INSTANCE_HEALTH"])
        return dict(answer["containerInstances"][0])

    endpoints = agent_ecs.discover_poll_endpoint(cluster=cluster, containerInstance=arn)
    assert endpoints["endpoint"] == endpoints["telemetryEndpoint"] == plane.url + "/"
    assert described()["agentConnected"] is False
    assert described()["healthStatus"]["overallStatus"] == "INSUFFICIENT_DATA"
    session = host.acs(arn, cluster, endpoint=endpoints["endpoint"])
    try:
        # The session is recorded just after the handshake's 101 reaches the agent.
        deadline = time.monotonic() + 5
        while described()["agentConnected"] is not True and time.monotonic() < deadline:
            time.sleep(0.05)
        assert described()["agentConnected"] is True
        assert described()["healthStatus"]["overallStatus"] == "OK"
    finally:
        session.close(1000, "")


def test_health_status_and_tags_appear_only_when_included(
    plane: ControlPlane, host: Host, cluster: str, ecs: Any, agent: Agent) -> None:
    arn = agent.register_container_instance(host.ecs(), cluster)["containerInstanceArn"]
    plain = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])
    assert "healthStatus" not in plain["containerInstances"][0]
    assert "tags" not in plain["containerInstances"][0]


def test_describe_reports_missing_instances_and_refuses_more_than_100(
    ecs: Any, cluster: str, admin: LabAdmin
) -> None:
    arns = admin.seed(101, cluster=cluster).container_instance_arns
    answer = ecs.describe_container_instances(cluster=cluster,
                                              containerInstances=[*arns[:99], "missing-id"])
    assert len(answer["containerInstances"]) == 99
    assert answer["failures"] == [{"arn": "missing-id", "reason": "MISSING"}]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.describe_container_instances(cluster=cluster, containerInstances=arns)
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterException"


def test_list_container_instances_pages_by_100_and_filters_by_status_and_attribute(
    ecs: Any, cluster: str, admin: LabAdmin
) -> None:
    arns = admin.seed(250, cluster=cluster).container_instance_arns
    pages = list(ecs.get_paginator("list_container_instances").paginate(
        cluster=cluster, PaginationConfig={"PageSize": 100}))
    assert [len(p["containerInstanceArns"]) for p in pages] == [100, 100, 50]
    assert sorted(a for p in pages for a in p["containerInstanceArns"]) == sorted(arns)
    ecs.update_container_instances_state(cluster=cluster, containerInstances=arns[:3],
                                         status="DRAINING")
    draining = ecs.list_container_instances(cluster=cluster, status="DRAINING")
    assert sorted(draining["containerInstanceArns"]) == sorted(arns[:3])
    linux = ecs.list_container_instances(cluster=cluster, maxResults=5,
                                         filter="attribute:ecs.os-type == linux")
    assert len(linux["containerInstanceArns"]) == 5 and "nextToken" in linux
    with pytest.raises(botocore.exceptions.ClientError):
        ecs.list_container_instances(cluster=cluster, maxResults=101)


def test_draining_answers_with_attributes_and_simulated_tasks_leave_after_the_delay(
    plane: ControlPlane, host: Host, cluster: str, ecs: Any, admin: LabAdmin, agent: Agent) -> None:
    arn = agent.register_container_instance(host.ecs(), cluster)["containerInstanceArn"]
    admin.set_running_tasks(cluster, arn, running=3, drain_delay_seconds=30)
    with pytest.raises(botocore.exceptions.ClientError) as busy:
        ecs.deregister_container_instance(cluster=cluster, containerInstance=arn)
    assert busy.value.response["Error"]["Code"] == "InvalidParameterException"
    drained = ecs.update_container_instances_state(cluster=cluster, containerInstances=[arn],
                                                   status="DRAINING")["containerInstances"][0]
    assert drained["status"] == "DRAINING"
    assert attributes(drained)["ecs.os-type"] == "linux"
    admin.advance_clock(29)
    described = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])
    assert described["containerInstances"][0]["runningTasksCount"] == 3
    admin.advance_clock(2)
    described = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])
    assert described["containerInstances"][0]["runningTasksCount"] == 0
    gone = ecs.deregister_container_instance(cluster=cluster, containerInstance=arn)
    assert gone["containerInstance"]["status"] == "INACTIVE"
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == []


def test_forced_deregistration_succeeds_with_running_tasks(
    plane: ControlPlane, host: Host, cluster: str, ecs: Any, admin: LabAdmin, agent: Agent) -> None:
    arn = agent.register_container_instance(host.ecs(), cluster)["containerInstanceArn"]
    admin.set_running_tasks(cluster, arn, running=2)
    ecs.deregister_container_instance(cluster=cluster, containerInstance=arn, force=True)
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == []


def test_put_attributes_accepts_a_full_arn_with_target_type(
    plane: ControlPlane, host: Host, cluster: str, ecs: Any, agent: Agent) -> None:
    arn = agent.register_container_instance(host.ecs(), cluster)["containerInstanceArn"]
    ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "rack", "value": "r7", "targetType": "container-instance", "targetId": arn}])
    listed = ecs.list_attributes(cluster=cluster, targetType="container-instance",
                                 attributeName="rack", attributeValue="r7")
    assert [(a["targetId"], a["value"]) for a in listed["attributes"]] == [(arn, "r7")]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.put_attributes(cluster=cluster, attributes=[
            {"name": "rack", "value": "r7", "targetType": "container-instance",
             "targetId": "no-such-instance"}])
    assert excinfo.value.response["Error"]["Code"] == "TargetNotFoundException"
