"""The control plane's IAM: the policy evaluator on its own, then denials through the front
door in each protocol's shape, for users and for the role credentials SSM vends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest

from anywhere_agent.lab.control_plane.iam import evaluate
from anywhere_agent.lab.control_plane.server import ControlPlane
from anywhere_agent.lab.operators import create_user

from .conftest import Agent, Host

ARN = "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123456789abcdef0"


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_nothing_is_allowed_without_a_statement_that_allows_it() -> None:
    assert not evaluate([], "ssm:DescribeActivations", "*", {}).allowed
    only_ecs = _policy({"Effect": "Allow", "Action": "ecs:*", "Resource": "*"})
    assert not evaluate([only_ecs], "ssm:DescribeActivations", "*", {}).allowed
    assert evaluate([only_ecs], "ecs:ListClusters", "*", {}).allowed


def test_an_explicit_deny_wins_over_any_allow() -> None:
    allow = _policy({"Effect": "Allow", "Action": "*", "Resource": "*"})
    deny = _policy({"Effect": "Deny", "Action": "ssm:Deregister*", "Resource": "*"})
    decision = evaluate([allow, deny], "ssm:DeregisterManagedInstance", ARN, {})
    assert (decision.allowed, decision.explicit_deny) == (False, True)
    assert evaluate([allow, deny], "ssm:DescribeActivations", "*", {}).allowed


def test_actions_match_case_insensitively_with_wildcards_and_not_action_inverts() -> None:
    policy = _policy({"Effect": "Allow", "Action": ["SSM:describe*", "ecs:?ollAction"],
                      "Resource": "*"})
    assert evaluate([policy], "ssm:DescribeInstanceInformation", "*", {}).allowed
    assert not evaluate([policy], "ssm:CreateActivation", "*", {}).allowed
    assert evaluate([policy], "ecs:PollAction", "*", {}).allowed
    everything_but_iam = _policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert evaluate([everything_but_iam], "ssm:CreateActivation", "*", {}).allowed
    assert not evaluate([everything_but_iam], "iam:CreateRole", "*", {}).allowed


def test_resources_match_wildcards_case_sensitively_and_not_resource_inverts() -> None:
    policy = _policy({"Effect": "Allow", "Action": "ssm:DeregisterManagedInstance",
                      "Resource": "arn:aws:ssm:*:*:managed-instance/mi-0123*"})
    assert evaluate([policy], "ssm:DeregisterManagedInstance", ARN, {}).allowed
    assert not evaluate([policy], "ssm:DeregisterManagedInstance", ARN.replace("mi-", "MI-"),
                        {}).allowed
    others = _policy({"Effect": "Allow", "Action": "ssm:*", "NotResource": ARN})
    assert not evaluate([others], "ssm:DeregisterManagedInstance", ARN, {}).allowed
    assert evaluate([others], "ssm:DeregisterManagedInstance", ARN[:-1] + "1", {}).allowed


def test_a_policy_variable_in_a_resource_names_the_caller_itself() -> None:
    policy = _policy({"Effect": "Allow", "Action": "ssm:DeregisterManagedInstance",
                      "Resource": "${ssm:SourceInstanceARN}"})
    assert evaluate([policy], "ssm:DeregisterManagedInstance", ARN,
                    {"ssm:SourceInstanceARN": ARN}).allowed
    assert not evaluate([policy], "ssm:DeregisterManagedInstance", ARN[:-1] + "1",
                        {"ssm:SourceInstanceARN": ARN}).allowed
    assert not evaluate([policy], "ssm:DeregisterManagedInstance", ARN, {}).allowed


@pytest.mark.parametrize(("condition", "context", "allowed"), [
    ({"StringEquals": {"cloudwatch:namespace": "ECSAnywhere/Agent"}},
     {"cloudwatch:namespace": "ECSAnywhere/Agent"}, True),
    ({"StringEquals": {"cloudwatch:namespace": "ECSAnywhere/Agent"}},
     {"cloudwatch:namespace": "Other"}, False),
    ({"StringEquals": {"cloudwatch:namespace": "ECSAnywhere/Agent"}}, {}, False),
    ({"StringLike": {"cloudwatch:namespace": "ECSAnywhere/*"}},
     {"cloudwatch:namespace": "ECSAnywhere/Agent"}, True),
    ({"StringNotEquals": {"cloudwatch:namespace": "AWS/EC2"}},
     {"cloudwatch:namespace": "ECSAnywhere/Agent"}, True),
    ({"StringNotEquals": {"cloudwatch:namespace": "AWS/EC2"}},
     {"cloudwatch:namespace": "AWS/EC2"}, False),
    ({"ArnEquals": {"iam:PolicyARN": ["arn:aws:iam::aws:policy/A", "arn:aws:iam::aws:policy/B"]}},
     {"iam:PolicyARN": "arn:aws:iam::aws:policy/B"}, True),
    ({"ArnLike": {"ecs:cluster": "arn:aws:ecs:*:*:cluster/prod"}},
     {"ecs:cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/dev"}, False),
    ({"StringEqualsIfExists": {"iam:PassedToService": "ssm.amazonaws.com"}}, {}, True),
    ({"StringEquals": {"iam:passedtoservice": "ssm.amazonaws.com"}},
     {"iam:PassedToService": "ssm.amazonaws.com"}, True),
    ({"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},
     {"aws:MultiFactorAuthAge": "1"}, False),
])
def test_conditions_hold_as_iam_evaluates_them(condition: dict[str, Any],
                                               context: dict[str, str], allowed: bool) -> None:
    policy = _policy({"Effect": "Allow", "Action": "*", "Resource": "*",
                      "Condition": condition})
    assert evaluate([policy], "cloudwatch:PutMetricData", "*", context).allowed is allowed


# -- through the front door --------------------------------------------------------------


@pytest.fixture
def enforcing(plane: ControlPlane) -> Iterator[ControlPlane]:
    before, plane.guard.enforce = plane.guard.enforce, True
    yield plane
    plane.guard.enforce = before


def _error(excinfo: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, str, int]:
    response = excinfo.value.response
    return (str(response["Error"]["Code"]), str(response["Error"]["Message"]),
            int(response["ResponseMetadata"]["HTTPStatusCode"]))


def test_a_user_is_denied_what_its_policy_lacks_in_each_protocols_shape(
        enforcing: ControlPlane, agent: Agent) -> None:
    key = create_user(enforcing.url, "reader", {"read": _policy(
        {"Effect": "Allow", "Action": "ssm:DescribeActivations", "Resource": "*"})})
    ssm = agent.client("ssm", key=key.access_key_id, secret=key.secret_access_key)
    iam = agent.client("iam", key=key.access_key_id, secret=key.secret_access_key)
    ssm.describe_activations()
    with pytest.raises(botocore.exceptions.ClientError) as json_denied:
        ssm.describe_instance_information()
    assert _error(json_denied) == (
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/reader is not authorized to perform: "
        "ssm:DescribeInstanceInformation on resource: arn:aws:ssm:us-east-1:123456789012:* "
        "because no identity-based policy allows the ssm:DescribeInstanceInformation action",
        400)
    with pytest.raises(botocore.exceptions.ClientError) as query_denied:
        iam.create_role(RoleName="ecsAnywhereRole", AssumeRolePolicyDocument="{}")
    code, message, status = _error(query_denied)
    assert (code, status) == ("AccessDenied", 403)
    assert message.startswith("User: arn:aws:iam::123456789012:user/reader is not authorized "
                              "to perform: iam:CreateRole on resource: "
                              "arn:aws:iam::123456789012:role/ecsAnywhereRole")


def test_create_activation_needs_pass_role_for_ssm_on_that_role(
        enforcing: ControlPlane, agent: Agent, role: str) -> None:
    may_create = {"Effect": "Allow", "Action": "ssm:CreateActivation", "Resource": "*"}
    key = create_user(enforcing.url, "activator", {"a": _policy(may_create)})
    ssm = agent.client("ssm", key=key.access_key_id, secret=key.secret_access_key)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.create_activation(IamRole=role)
    assert "iam:PassRole on resource: arn:aws:iam::123456789012:role/ecsAnywhereRole" in (
        _error(excinfo)[1])
    create_user(enforcing.url, "activator", {"a": _policy(may_create, {
        "Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
        "Condition": {"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}}})})
    ssm.create_activation(IamRole=role)


def test_vended_credentials_act_as_the_role_with_exactly_its_policies(
        enforcing: ControlPlane, agent: Agent, host: Host) -> None:
    agent.client("ecs").create_cluster(clusterName="edge")
    host_ecs = host.ecs()
    host_ecs.discover_poll_endpoint(cluster="edge")  # AmazonEC2ContainerServiceforEC2Role
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        host_ecs.describe_clusters(clusters=["edge"])
    code, message, _ = _error(excinfo)
    assert code == "AccessDeniedException"
    assert message.startswith(
        f"User: arn:aws:sts::123456789012:assumed-role/ecsAnywhereRole/{host.instance_id} is "
        "not authorized to perform: ecs:DescribeClusters on resource: "
        "arn:aws:ecs:us-east-1:123456789012:cluster/edge")
    agent.client("iam").put_role_policy(
        RoleName="ecsAnywhereRole", PolicyName="read", PolicyDocument=json.dumps(_policy(
            {"Effect": "Allow", "Action": "ecs:DescribeClusters", "Resource": "*"})))
    host_ecs.describe_clusters(clusters=["edge"])  # an inline policy counts at once


def test_the_deny_fault_still_denies_after_n_calls(enforcing: ControlPlane, agent: Agent,
                                                   admin: Any) -> None:
    from anywhere_agent.lab.control_plane.faults import FaultRule

    admin.set_faults([FaultRule("deny", service="ecs", operation="ListClusters")])
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        agent.client("ecs").list_clusters()
    assert _error(excinfo)[0] == "AccessDeniedException"
