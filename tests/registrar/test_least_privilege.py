"""Each published policy is least privilege: without any one of its actions, one of the
product's flows run with that policy fails (and with the whole policy, every flow works).

iam/registrar.json is driven through the registrar CLI (the Ansible controller runs the same
CLI with the same policy); iam/host-role-extra.json through the node's own code paths, with
the credentials SSM vends to a registered host.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from anywhere_agent.aws.clients import AwsSettings, Clients
from anywhere_agent.config import Config, ReportingConfig
from anywhere_agent.health.model import HostHealth, Status
from anywhere_agent.install.steps import (
    VerifyJoinStep,
    central_registration,
    cluster_exists,
    deregister_own_registration,
)
from anywhere_agent.lab.operators import create_user, root_client
from anywhere_agent.registrar import policies
from anywhere_agent.supervise.reporting import AwsReporter

REGISTRAR = policies.load("registrar")
HOST_EXTRA = policies.load("host-role-extra")
TRUST_EC2 = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def without(document: dict[str, Any], action: str | None) -> dict[str, Any]:
    """The policy with one action taken out of every statement (statements left empty go)."""
    copy = json.loads(json.dumps(document))
    kept = []
    for statement in copy["Statement"]:
        names = statement["Action"] if isinstance(statement["Action"], list) \
            else [statement["Action"]]
        names = [n for n in names if n != action]
        if names:
            statement["Action"] = names
            kept.append(statement)
    copy["Statement"] = kept
    return copy


# -- the registrar --------------------------------------------------------------------------


def registrar_flows(cli: Callable[..., Any], lab: Any, tmp_path: Any) -> list[str]:
    """Every registrar command an operator or the Ansible controller runs; the failing ones."""
    root_client(lab.url, "iam").create_role(RoleName="ecsAnywhereOther",
                                            AssumeRolePolicyDocument=json.dumps(TRUST_EC2))
    failed = []

    def step(name: str, *args: str) -> Any:
        result = cli(*args)
        if result.exit_code != 0:
            failed.append(f"{name}: {result.stderr.strip()}")
        return result

    step("ensure (fresh)", "ensure", "--cluster", "prod", "--json")
    step("ensure (existing)", "ensure", "--cluster", "prod", "--json")
    step("ensure (role without ssm trust)", "ensure", "--role", "ecsAnywhereOther",
         "--cluster", "prod", "--json")
    step("activate", "activate", "--count", "1", "--output", str(tmp_path / "a.json"),
         "--json")
    seeded = lab.admin.seed(2, cluster="prod")
    mi = seeded.instance_ids[0]
    step("fleet", "fleet", "--json")
    step("wait", "wait", "--hosts", mi, "--timeout", "20s", "--interval", "1s", "--json")
    step("drain", "drain", "--hosts", mi, "--timeout", "20s", "--interval", "1s", "--json")
    step("undrain", "undrain", "--hosts", mi, "--json")
    step("revoke", "revoke", "--activation-id",
         json.loads((tmp_path / "a.json").read_text())["activations"][0]["activation_id"]
         if (tmp_path / "a.json").exists() else "none", "--json")
    step("prune (dry run)", "prune", "--dry-run", "--json")
    step("deregister", "deregister", mi, "--json")
    return failed


@pytest.mark.parametrize("action", [None, *policies.actions(REGISTRAR)])
def test_registrar_policy_without_any_one_action_breaks_a_registrar_flow(
        cli: Any, lab: Any, tmp_path: Any, action: str | None) -> None:
    create_user(lab.url, "registrar", {"registrar": without(REGISTRAR, action)})
    failed = registrar_flows(cli, lab, tmp_path)
    if action is None:
        assert failed == []
    else:
        assert failed, f"no registrar flow needs {action}"


# -- the hosts' extra policy -----------------------------------------------------------------


def registered_host(lab: Any, extra: dict[str, Any]) -> Clients:
    """A host registered through SSM whose role holds the managed policies plus `extra`;
    returns clients signed with the role credentials SSM vends to it."""
    from tests.lab.control_plane.conftest import Agent  # the agents' own signing

    iam = root_client(lab.url, "iam")
    iam.create_role(RoleName="ecsAnywhereRole", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                               "Principal": {"Service": "ssm.amazonaws.com"}}]}))
    for policy in ("AmazonSSMManagedInstanceCore",
                   "service-role/AmazonEC2ContainerServiceforEC2Role"):
        iam.attach_role_policy(RoleName="ecsAnywhereRole",
                               PolicyArn=f"arn:aws:iam::aws:policy/{policy}")
    if extra["Statement"]:
        iam.put_role_policy(RoleName="ecsAnywhereRole", PolicyName="extra",
                            PolicyDocument=json.dumps(extra))
    root_client(lab.url, "ecs").create_cluster(clusterName="prod")
    answer = root_client(lab.url, "ssm").create_activation(IamRole="ecsAnywhereRole")
    agent = Agent(lab.plane)
    mi = agent.register(answer["ActivationId"], answer["ActivationCode"]).body["InstanceId"]
    creds = agent.role_token(mi).body
    host_ecs = agent.client("ecs", key=creds["AccessKeyId"], secret=creds["SecretAccessKey"],
                            token=creds["SessionToken"])
    from tests.lab.control_plane.conftest import AGENT_ATTRIBUTES, TOTAL_RESOURCES

    host_ecs.register_container_instance(
        cluster="prod", instanceIdentityDocument="", instanceIdentityDocumentSignature="",
        attributes=AGENT_ATTRIBUTES, totalResources=TOTAL_RESOURCES)
    import boto3

    session: Any = boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"], region_name="us-east-1")
    clients = Clients(AwsSettings(region="us-east-1", endpoints={"default": lab.url}),
                      session=session)
    clients.instance_id = mi  # type: ignore[attr-defined]
    return clients


def host_flows(lab: Any, clients: Clients) -> list[str]:
    """What the node does with its own credentials; the flows that did not work."""
    mi = clients.instance_id  # type: ignore[attr-defined]
    arn = root_client(lab.url, "ecs").list_container_instances(cluster="prod")[
        "containerInstanceArns"][0]
    notes: list[str] = []
    ctx = SimpleNamespace(
        host_clients=lambda: clients, cfg=SimpleNamespace(cluster="prod", join_timeout_seconds=5),
        report={}, note=notes.append, clock=lambda: 0.0, sleep=lambda s: None)
    failed = []
    if central_registration(ctx, mi) != "present":  # type: ignore[arg-type]
        failed.append("stale-registration check")
    if cluster_exists(ctx) is not True:  # type: ignore[arg-type]
        failed.append("cluster check")
    if not VerifyJoinStep()._cloud(ctx, arn, 10.0):  # type: ignore[arg-type]
        failed.append("join verification")
    config = Config(region="us-east-1", cluster="prod", docker_source="none",
                    reporting=ReportingConfig(cloudwatch=True, attribute=True))
    reporter = AwsReporter(config, SimpleNamespace(), 60.0,  # type: ignore[arg-type]
                           client_factory=clients.client)
    reporter.report(HostHealth.build([], 0.0, cluster="prod", instance_id=mi,
                                     container_instance_arn=arn), 0.0)
    [check] = reporter.checks()
    if check.status is not Status.OK:
        failed.append(f"reporting: {check.summary}")
    if not deregister_own_registration(ctx, mi):  # type: ignore[arg-type]
        failed.append("deregistering itself")
    return failed


@pytest.mark.parametrize("action", [None, *policies.actions(HOST_EXTRA)])
def test_host_extra_policy_without_any_one_action_breaks_a_node_flow(
        lab: Any, action: str | None) -> None:
    failed = host_flows(lab, registered_host(lab, without(HOST_EXTRA, action)))
    if action is None:
        assert failed == []
    else:
        assert failed, f"no node flow needs {action}"


def test_a_host_may_deregister_itself_but_no_other_host(lab: Any) -> None:
    first = registered_host(lab, HOST_EXTRA)
    other = root_client(lab.url, "ssm").create_activation(IamRole="ecsAnywhereRole")
    from tests.lab.control_plane.conftest import Agent

    second = Agent(lab.plane).register(other["ActivationId"], other["ActivationCode"])
    ctx = SimpleNamespace(host_clients=lambda: first)
    assert not deregister_own_registration(ctx, second.body["InstanceId"])  # type: ignore[arg-type]
    assert deregister_own_registration(ctx, first.instance_id)  # type: ignore[arg-type,attr-defined]
