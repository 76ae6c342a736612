"""Ensure the hosts' IAM role and the ECS cluster exist and are right; report what changed."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import botocore.exceptions

from anywhere_agent.aws.clients import Clients, aws_errors, error_code, translate
from anywhere_agent.errors import UsageError
from anywhere_agent.registrar import policies

LOG = logging.getLogger(__name__)

DEFAULT_ROLE = "ecsAnywhereRole"
DEFAULT_CLUSTER = "default"
# The role's one inline policy: iam/host-role-extra.json (reporting, read-only verification,
# deregistering only itself); README "IAM" says why each action is there.
HOST_EXTRA_POLICY_NAME = "anywhere-agent-host-extra"
REPORTING_POLICY_NAME = HOST_EXTRA_POLICY_NAME  # its first purpose; kept for callers
MANAGED_POLICIES = ("AmazonSSMManagedInstanceCore",
                    "service-role/AmazonEC2ContainerServiceforEC2Role")


def trust_statement() -> dict[str, Any]:
    """The statement that lets SSM hand the role to registered hosts (a fresh copy each call)."""
    return {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"},
            "Action": "sts:AssumeRole"}

def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def host_extra_policy(region: str = "us-east-1") -> dict[str, Any]:
    """iam/host-role-extra.json in the region's partition: what the hosts' role needs beyond
    the two AWS managed policies."""
    return policies.load("host-role-extra", partition(region))


reporting_policy = host_extra_policy


@dataclass
class Resource:
    kind: str
    name: str
    arn: str = ""
    changes: list[str] = field(default_factory=list)


@dataclass
class EnsureResult:
    role: Resource
    cluster: Resource

    @property
    def changed(self) -> bool:
        return bool(self.role.changes or self.cluster.changes)

    def to_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "role": asdict(self.role),
                "cluster": asdict(self.cluster)}


@dataclass(frozen=True)
class Found:
    """What exists now (read-only calls); `plan` derives the writes from it."""

    role: str
    cluster: str
    role_arn: str = ""  # "" when the role does not exist
    trust_policy: Any = None
    attached: frozenset[str] = frozenset()
    reporting_policy: Any = None  # the inline policy's document, None when absent
    cluster_arn: str = ""  # "" when missing or INACTIVE


@dataclass(frozen=True)
class Step:
    resource: str  # "role" | "cluster"
    action: str  # create_role | update_trust | attach | put_reporting | create_cluster
    detail: str  # what the report says changed
    argument: str = ""


def _trusts_ssm(doc: Any) -> bool:
    if isinstance(doc, str):
        doc = json.loads(doc)
    statements = doc.get("Statement", []) if isinstance(doc, dict) else []
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements:
        services = st.get("Principal", {}).get("Service", [])
        services = [services] if isinstance(services, str) else services
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if (st.get("Effect") == "Allow" and "ssm.amazonaws.com" in services
                and "sts:AssumeRole" in actions):
            return True
    return False


def _policy_doc(doc: Any) -> Any:
    return json.loads(doc) if isinstance(doc, str) else doc


def _missing_ok(call: Any, doing: str) -> Any:
    """Run a read; NoSuchEntity means absent (None), any other error is the user's to fix."""
    try:
        return call()
    except botocore.exceptions.ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise translate(err, doing) from None


def inspect(clients: Clients, role: str, cluster: str) -> Found:
    """Read the role, its policies and the cluster; no writes, so a denied read creates nothing."""
    iam, ecs = clients.client("iam"), clients.client("ecs")
    got = _missing_ok(lambda: iam.get_role(RoleName=role)["Role"], f"reading IAM role {role}")
    attached: frozenset[str] = frozenset()
    reporting = None
    if got is not None:
        with aws_errors(f"listing policies attached to IAM role {role}"):
            attached = frozenset(
                p["PolicyArn"]
                for page in iam.get_paginator("list_attached_role_policies").paginate(
                    RoleName=role, PaginationConfig={"PageSize": 1000})
                for p in page["AttachedPolicies"])
        reporting = _missing_ok(
            lambda: _policy_doc(iam.get_role_policy(
                RoleName=role, PolicyName=REPORTING_POLICY_NAME)["PolicyDocument"]),
            f"reading inline policy {REPORTING_POLICY_NAME} of IAM role {role}")
    with aws_errors(f"describing ECS cluster {cluster}"):
        active = [c["clusterArn"] for c in ecs.describe_clusters(clusters=[cluster])["clusters"]
                  if c.get("status") == "ACTIVE"]
    return Found(role=role, cluster=cluster, role_arn=got["Arn"] if got else "",
                 trust_policy=_policy_doc(got["AssumeRolePolicyDocument"]) if got else None,
                 attached=attached, reporting_policy=reporting,
                 cluster_arn=active[0] if active else "")


def plan(found: Found, region: str) -> list[Step]:
    """Pure: the writes that make `found` right, in order (role before its policies)."""
    steps: list[Step] = []
    if not found.role_arn:
        steps.append(Step("role", "create_role", "created role trusting ssm.amazonaws.com"))
    elif not _trusts_ssm(found.trust_policy):
        steps.append(Step("role", "update_trust", "added ssm.amazonaws.com to the trust policy"))
    prefix = f"arn:{partition(region)}:iam::aws:policy/"
    for policy in MANAGED_POLICIES:
        if prefix + policy not in found.attached:
            steps.append(Step("role", "attach", f"attached {policy}", prefix + policy))
    if found.reporting_policy != reporting_policy(region):
        verb = "added" if found.reporting_policy is None else "updated"
        steps.append(Step("role", "put_reporting",
                          f"{verb} inline policy {REPORTING_POLICY_NAME}"))
    if not found.cluster_arn:
        steps.append(Step("cluster", "create_cluster", "created cluster"))
    return steps


def _apply_step(clients: Clients, found: Found, step: Step) -> str:
    """Do one write; returns the ARN it produced, if any."""
    iam, role = clients.client("iam"), found.role
    if step.action == "create_role":
        with aws_errors(f"creating IAM role {role}"):
            arn: str = iam.create_role(
                RoleName=role,
                AssumeRolePolicyDocument=json.dumps(
                    {"Version": "2012-10-17", "Statement": [trust_statement()]}),
                Description="ECS Anywhere hosts (SSM managed instances); made by anywhere-agent",
            )["Role"]["Arn"]
        return arn
    if step.action == "update_trust":
        # Add our statement rather than replace: the role may serve others we cannot see.
        doc = dict(found.trust_policy or {"Version": "2012-10-17"})
        statements = doc.get("Statement", [])
        doc["Statement"] = [*([statements] if isinstance(statements, dict) else statements),
                            trust_statement()]
        with aws_errors(f"updating the trust policy of IAM role {role}"):
            iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(doc))
    elif step.action == "attach":
        with aws_errors(f"attaching {step.argument} to IAM role {role}"):
            iam.attach_role_policy(RoleName=role, PolicyArn=step.argument)
    elif step.action == "put_reporting":
        with aws_errors(f"writing inline policy {REPORTING_POLICY_NAME} on IAM role {role}"):
            iam.put_role_policy(RoleName=role, PolicyName=REPORTING_POLICY_NAME,
                                PolicyDocument=json.dumps(
                                    reporting_policy(clients.settings.region)))
    elif step.action == "create_cluster":
        with aws_errors(f"creating ECS cluster {found.cluster}"):
            cluster_arn: str = clients.client("ecs").create_cluster(
                clusterName=found.cluster)["cluster"]["clusterArn"]
        return cluster_arn
    return ""


def ensure(clients: Clients, role: str = DEFAULT_ROLE,
           cluster: str = DEFAULT_CLUSTER) -> EnsureResult:
    """Read everything, then write only what is missing or wrong; a rerun changes nothing."""
    if not role or not cluster:
        raise UsageError("role and cluster names must not be empty",
                         "pass --role NAME and --cluster NAME")
    found = inspect(clients, role, cluster)
    result = EnsureResult(role=Resource("iam_role", role, found.role_arn),
                          cluster=Resource("ecs_cluster", cluster, found.cluster_arn))
    for step in plan(found, clients.settings.region):
        target = result.role if step.resource == "role" else result.cluster
        arn = _apply_step(clients, found, step)
        target.arn = arn or target.arn
        target.changes.append(step.detail)
        LOG.info("%s %s: %s", target.kind, target.name, step.detail)
    return result
