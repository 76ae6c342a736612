"""SSM activations and managed instances as boto3 and the SSM agent see them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import pytest

from anywhere_agent.lab.control_plane.admin import LabAdmin
from anywhere_agent.lab.control_plane.principals import ROOT_ACCESS_KEY_ID
from anywhere_agent.lab.control_plane.server import ControlPlane

if TYPE_CHECKING:
    from conftest import Agent, Host


def error_code(excinfo: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def test_create_activation_returns_a_uuid_id_and_a_20_character_code(ssm: Any, role: str) -> None:
    answer = ssm.create_activation(IamRole=role, DefaultInstanceName="edge",
                                   Tags=[{"Key": "team", "Value": "ops"}])
    assert len(answer["ActivationCode"]) == 20
    described = ssm.describe_activations()["ActivationList"]
    assert [a["ActivationId"] for a in described] == [answer["ActivationId"]]
    activation = described[0]
    assert activation["RegistrationLimit"] == 1
    assert activation["RegistrationsCount"] == 0
    assert activation["Expired"] is False
    assert activation["DefaultInstanceName"] == "edge"
    assert activation["Tags"] == [{"Key": "team", "Value": "ops"}]
    lifetime = activation["ExpirationDate"] - activation["CreatedDate"]
    assert abs(lifetime.total_seconds() - 86400) < 5


def test_create_activation_rejects_a_role_that_does_not_exist_or_trust_ssm(
    ssm: Any, plane: ControlPlane, agent: Agent) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        ssm.create_activation(IamRole="noSuchRole")
    assert error_code(missing) == "ValidationException"
    agent.client("iam").create_role(RoleName="ec2Only", AssumeRolePolicyDocument="{}")
    with pytest.raises(botocore.exceptions.ClientError) as untrusted:
        ssm.create_activation(IamRole="ec2Only")
    assert error_code(untrusted) == "ValidationException"


@pytest.mark.parametrize("limit", [0, 1001])
def test_create_activation_rejects_a_registration_limit_outside_1_to_1000(
    plane: ControlPlane, role: str, limit: int, agent: Agent) -> None:
    answer = agent.call("AmazonSSM.CreateActivation",
                        {"IamRole": role, "RegistrationLimit": limit},
                        credential=ROOT_ACCESS_KEY_ID)
    assert (answer.status, answer.error) == (400, "ValidationException")


def test_create_activation_rejects_an_expiration_more_than_30_days_ahead(
    ssm: Any, role: str
) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.create_activation(IamRole=role, ExpirationDate=time.time() + 31 * 86400)
    assert error_code(excinfo) == "InvalidParameters"
    ssm.create_activation(IamRole=role, ExpirationDate=time.time() + 29 * 86400)


def test_describe_activations_filters_and_pages_at_max_results(
    ssm: Any, role: str, agent: Agent
) -> None:
    ids = [agent.create_activation(ssm, role, DefaultInstanceName=f"n{i % 2}")[0] for i in range(7)]
    paginator = ssm.get_paginator("describe_activations")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["ActivationList"]) for p in pages] == [3, 3, 1]
    assert [a["ActivationId"] for p in pages for a in p["ActivationList"]] == ids
    filtered = ssm.describe_activations(
        Filters=[{"FilterKey": "DefaultInstanceName", "FilterValues": ["n1"]}])
    assert len(filtered["ActivationList"]) == 3
    by_id = ssm.describe_activations(
        Filters=[{"FilterKey": "ActivationIds", "FilterValues": [ids[4]]}])
    assert [a["ActivationId"] for a in by_id["ActivationList"]] == [ids[4]]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.describe_activations(NextToken="not-a-token")
    assert error_code(excinfo) == "InvalidNextToken"


def test_registration_counts_against_the_limit_and_then_is_refused(
    plane: ControlPlane, ssm: Any, role: str, agent: Agent) -> None:
    activation_id, code = agent.create_activation(ssm, role, limit=2)
    first, second = agent.register(activation_id, code), agent.register(activation_id, code)
    assert first.status == second.status == 200
    assert first.body["InstanceId"] != second.body["InstanceId"]
    assert first.body["InstanceId"].startswith("mi-") and len(first.body["InstanceId"]) == 20
    third = agent.register(activation_id, code)
    assert (third.status, third.error) == (400, "RegistrationLimitExceeded")
    activation = ssm.describe_activations()["ActivationList"][0]
    assert activation["RegistrationsCount"] == 2


def test_registration_with_a_wrong_code_or_unknown_id_is_an_invalid_activation(
    plane: ControlPlane, ssm: Any, role: str, agent: Agent) -> None:
    activation_id, code = agent.create_activation(ssm, role)
    wrong_code = agent.register(activation_id, "A" * 20)
    unknown_id = agent.register("11111111-2222-3333-4444-555555555555", code)
    assert (wrong_code.status, wrong_code.error) == (400, "InvalidActivation")
    assert (unknown_id.status, unknown_id.error) == (400, "InvalidActivation")


def test_an_expired_activation_refuses_new_hosts_but_keeps_registered_ones(
    plane: ControlPlane, ssm: Any, role: str, admin: LabAdmin, agent: Agent) -> None:
    activation_id, code = agent.create_activation(ssm, role, limit=5)
    instance_id = agent.register(activation_id, code).body["InstanceId"]
    admin.expire_activation(activation_id)
    refused = agent.register(activation_id, code)
    assert (refused.status, refused.error) == (400, "ActivationExpired")
    assert ssm.describe_activations()["ActivationList"][0]["Expired"] is True
    assert agent.role_token(instance_id).status == 200


def test_delete_activation_keeps_its_nodes_and_unknown_ids_are_refused(
    plane: ControlPlane, ssm: Any, role: str, agent: Agent) -> None:
    activation_id, code = agent.create_activation(ssm, role)
    instance_id = agent.register(activation_id, code).body["InstanceId"]
    ssm.delete_activation(ActivationId=activation_id)
    assert ssm.describe_activations()["ActivationList"] == []
    info = ssm.describe_instance_information()["InstanceInformationList"]
    assert [i["InstanceId"] for i in info] == [instance_id]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.delete_activation(ActivationId=activation_id)
    assert error_code(excinfo) == "InvalidActivationId"


def test_registration_is_anonymous_and_the_role_token_body_arrives_chunked(
    plane: ControlPlane, host: Host
) -> None:
    credentials = host.credentials
    assert credentials["AccessKeyId"].startswith("ASIA")
    assert credentials["SecretAccessKey"] and credentials["SessionToken"]
    assert credentials["UpdateKeyPair"] is False
    assert abs(credentials["TokenExpirationDate"] - (time.time() + 1800)) < 5


def test_role_token_without_a_body_is_refused_so_a_lost_chunked_body_shows(
    plane: ControlPlane, host: Host, agent: Agent) -> None:
    answer = agent.call("AmazonSSM.RequestManagedInstanceRoleToken", {},
                        credential=host.instance_id, chunked=True)
    assert (answer.status, answer.error) == (400, "ValidationException")


def test_heartbeat_makes_an_instance_online_with_the_agent_facts(
    plane: ControlPlane, ssm: Any, host: Host, agent: Agent) -> None:
    before = ssm.describe_instance_information()["InstanceInformationList"][0]
    assert before["PingStatus"] == "ConnectionLost"
    assert "LastPingDateTime" not in before
    assert agent.heartbeat(host.instance_id, host.credentials["AccessKeyId"]).status == 200
    info = ssm.describe_instance_information()["InstanceInformationList"][0]
    assert info["InstanceId"] == host.instance_id
    assert info["PingStatus"] == "Online"
    assert info["ResourceType"] == "ManagedInstance"
    assert info["IamRole"] == "ecsAnywhereRole"
    assert (info["AgentVersion"], info["ComputerName"], info["IPAddress"]) == (
        "3.3.1611.0", "n1", "10.213.7.11")
    assert (info["PlatformType"], info["PlatformName"], info["PlatformVersion"]) == (
        "Linux", "Debian GNU/Linux", "12")
    assert abs(info["LastPingDateTime"].timestamp() - time.time()) < 5


def test_ping_status_turns_connection_lost_after_the_ping_timeout(
    plane: ControlPlane, ssm: Any, host: Host, admin: LabAdmin, agent: Agent) -> None:
    agent.heartbeat(host.instance_id, host.credentials["AccessKeyId"])
    admin.advance_clock(59)
    assert ssm.describe_instance_information()["InstanceInformationList"][0][
        "PingStatus"] == "Online"
    admin.advance_clock(2)
    lost = ssm.describe_instance_information(
        Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])
    assert [i["InstanceId"] for i in lost["InstanceInformationList"]] == [host.instance_id]


def test_describe_instance_information_validates_max_results_and_filter_keys(
    plane: ControlPlane, ssm: Any, agent: Agent) -> None:
    for bad in (4, 51):
        answer = agent.call("AmazonSSM.DescribeInstanceInformation",
                            {"MaxResults": bad}, credential=ROOT_ACCESS_KEY_ID)
        assert (answer.status, answer.error) == (400, "ValidationException")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.describe_instance_information(Filters=[{"Key": "Colour", "Values": ["red"]}])
    assert error_code(excinfo) == "InvalidFilterKey"


def test_describe_instance_information_filters_by_ids_activation_and_legacy_list(
    plane: ControlPlane, ssm: Any, role: str, agent: Agent) -> None:
    first_activation, first_code = agent.create_activation(ssm, role, limit=3)
    second_activation, second_code = agent.create_activation(ssm, role)
    ours = [agent.register(first_activation, first_code).body["InstanceId"] for _ in range(3)]
    other = agent.register(second_activation, second_code).body["InstanceId"]

    def ids(**kwargs: Any) -> list[str]:
        return [i["InstanceId"]
                for i in ssm.describe_instance_information(**kwargs)["InstanceInformationList"]]

    assert ids(Filters=[{"Key": "ActivationIds", "Values": [first_activation]}]) == ours
    assert ids(Filters=[{"Key": "InstanceIds", "Values": [other]}]) == [other]
    assert ids(InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": [other]}]) == [
        other]
    assert ids(Filters=[{"Key": "ResourceType", "Values": ["ManagedInstance"]}]) == [*ours, other]


def test_describe_instance_information_pages_by_fifty(ssm: Any, admin: LabAdmin) -> None:
    seeded = admin.seed(120).instance_ids
    pages = list(ssm.get_paginator("describe_instance_information").paginate(
        PaginationConfig={"PageSize": 50}))
    assert [len(p["InstanceInformationList"]) for p in pages] == [50, 50, 20]
    assert [i["InstanceId"] for p in pages for i in p["InstanceInformationList"]] == seeded


def test_deregistration_removes_the_node_and_stops_its_tokens_and_heartbeats(
    plane: ControlPlane, ssm: Any, host: Host, agent: Agent) -> None:
    ssm.deregister_managed_instance(InstanceId=host.instance_id)
    assert ssm.describe_instance_information()["InstanceInformationList"] == []
    token = agent.role_token(host.instance_id)
    assert (token.status, token.error) == (400, "InvalidInstanceId")
    beat = agent.heartbeat(host.instance_id, host.credentials["AccessKeyId"])
    assert (beat.status, beat.error) == (400, "InvalidInstanceId")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.deregister_managed_instance(InstanceId=host.instance_id)
    assert error_code(excinfo) == "InvalidInstanceId"


def test_denied_role_tokens_fail_until_allowed_again(
    plane: ControlPlane, host: Host, admin: LabAdmin, agent: Agent) -> None:
    admin.deny_role_tokens(host.instance_id)
    denied = agent.role_token(host.instance_id)
    assert (denied.status, denied.error) == (400, "AccessDeniedException")
    admin.deny_role_tokens(host.instance_id, deny=False)
    assert agent.role_token(host.instance_id).status == 200


def test_vended_credentials_expire_after_their_lifetime(
    plane: ControlPlane, host: Host, admin: LabAdmin, agent: Agent) -> None:
    agent_ecs = host.ecs()
    agent.client("ecs").create_cluster(clusterName="edge")
    agent_ecs.discover_poll_endpoint(cluster="edge")  # a call the host role may make
    admin.advance_clock(1801)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        agent_ecs.discover_poll_endpoint(cluster="edge")
    assert error_code(excinfo) == "ExpiredTokenException"


def test_agent_polls_for_messages_and_associations_get_empty_answers(
    plane: ControlPlane, host: Host, agent: Agent) -> None:
    key = host.credentials["AccessKeyId"]
    messages = agent.call("EC2WindowsMessageDeliveryService.GetMessages",
                          {"Destination": host.instance_id, "MessagesRequestId": "r1",
                           "VisibilityTimeoutInSeconds": 10}, credential=key)
    assert messages.body == {"Destination": host.instance_id, "Messages": [],
                             "MessagesRequestId": "r1"}
    associations = agent.call("AmazonSSM.ListInstanceAssociations",
                              {"InstanceId": host.instance_id}, credential=key)
    assert associations.body == {"Associations": []}
