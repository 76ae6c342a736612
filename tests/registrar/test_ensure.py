"""registrar ensure: host role and cluster created once, left alone after, fixed when wrong."""

from __future__ import annotations

import json

from anywhere_agent.errors import ExitCode
from anywhere_agent.registrar.ensure import REPORTING_POLICY_NAME, reporting_policy


def test_ensure_creates_role_policies_and_cluster_then_a_rerun_changes_nothing(cli, clients):
    first = cli("ensure", "--cluster", "prod", "--json")
    assert first.exit_code == 0, first.stderr
    report = first.json()
    assert report["changed"] is True
    assert report["role"]["changes"] == [
        "created role trusting ssm.amazonaws.com",
        "attached AmazonSSMManagedInstanceCore",
        "attached service-role/AmazonEC2ContainerServiceforEC2Role",
        f"added inline policy {REPORTING_POLICY_NAME}",
    ]
    assert report["cluster"]["changes"] == ["created cluster"]

    iam = clients.client("iam")
    role = iam.get_role(RoleName="ecsAnywhereRole")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ssm.amazonaws.com"}
    attached = {p["PolicyName"] for p in
                iam.list_attached_role_policies(RoleName="ecsAnywhereRole")["AttachedPolicies"]}
    assert attached == {"AmazonSSMManagedInstanceCore", "AmazonEC2ContainerServiceforEC2Role"}
    inline = iam.get_role_policy(RoleName="ecsAnywhereRole", PolicyName=REPORTING_POLICY_NAME)
    assert inline["PolicyDocument"] == reporting_policy()
    assert clients.client("ecs").describe_clusters(clusters=["prod"])["clusters"][0][
        "status"] == "ACTIVE"

    second = cli("ensure", "--cluster", "prod", "--json")
    assert second.exit_code == 0
    assert second.json()["changed"] is False
    assert second.json()["role"]["changes"] == second.json()["cluster"]["changes"] == []


def test_ensure_text_output_says_unchanged_on_a_second_run(cli):
    assert cli("ensure").exit_code == 0
    again = cli("ensure")
    assert again.stdout.splitlines() == ["iam_role ecsAnywhereRole: unchanged",
                                         "ecs_cluster default: unchanged"]


def test_ensure_adds_ssm_trust_and_a_missing_policy_to_an_existing_role(cli, clients):
    iam = clients.client("iam")
    other = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
             "Action": "sts:AssumeRole"}
    iam.create_role(RoleName="ecsAnywhereHostRole", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [other]}))
    iam.attach_role_policy(RoleName="ecsAnywhereHostRole",
                           PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    result = cli("ensure", "--role", "ecsAnywhereHostRole", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["role"]["changes"] == [
        "added ssm.amazonaws.com to the trust policy",
        "attached service-role/AmazonEC2ContainerServiceforEC2Role",
        f"added inline policy {REPORTING_POLICY_NAME}",
    ]
    statements = iam.get_role(RoleName="ecsAnywhereHostRole")["Role"]["AssumeRolePolicyDocument"][
        "Statement"]
    principals = [s["Principal"]["Service"] for s in statements]
    assert principals == ["ec2.amazonaws.com", "ssm.amazonaws.com"]  # the old one is kept
    assert cli("ensure", "--role", "ecsAnywhereHostRole", "--json").json()["changed"] is False


def test_ensure_replaces_a_drifted_reporting_policy(cli, clients):
    assert cli("ensure").exit_code == 0
    clients.client("iam").put_role_policy(
        RoleName="ecsAnywhereRole", PolicyName=REPORTING_POLICY_NAME,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    fixed = cli("ensure", "--json").json()
    assert fixed["role"]["changes"] == [f"updated inline policy {REPORTING_POLICY_NAME}"]
    assert cli("ensure", "--json").json()["changed"] is False


def test_ensure_with_an_empty_cluster_name_is_a_usage_error(cli, lab):
    result = cli("ensure", "--cluster", "")
    assert result.exit_code == ExitCode.USAGE
    assert len(result.stderr.strip().splitlines()) == 1
    assert lab.writes() == {}
