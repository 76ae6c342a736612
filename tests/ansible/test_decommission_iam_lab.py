"""Decommission under IAM enforcement: the controller holds iam/registrar.json, the hosts'
role only its AWS managed policies (no right to deregister themselves), so what the hosts
cannot remove is removed centrally by the playbook's registrar call."""

from __future__ import annotations

import pytest

from anywhere_agent.lab import rollout
from anywhere_agent.registrar.ensure import HOST_EXTRA_POLICY_NAME
from tests.ansible.conftest import CLUSTER, AnsibleLab

pytestmark = [pytest.mark.lab, pytest.mark.ansible]

THREE = "n1,n2,n3"


def registrations(alab: AnsibleLab) -> tuple[set[str], set[str]]:
    """Managed instance IDs in SSM, and the mi- IDs of container instances in the cluster."""
    ssm, ecs = alab.client("ssm"), alab.client("ecs")
    infos = ssm.describe_instance_information(MaxResults=50)["InstanceInformationList"]
    arns = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
    cis = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)[
        "containerInstances"] if arns else []
    return {i["InstanceId"] for i in infos}, {c["ec2InstanceId"] for c in cis}


def test_decommissioning_three_hosts_leaves_nothing_registered_on_either_side(
        ansible_lab: AnsibleLab) -> None:
    run = ansible_lab.run("rollout.yml", "--limit", THREE)
    assert run.rc == 0, run.output[-6000:]
    in_ssm, in_ecs = registrations(ansible_lab)
    assert len(in_ssm) == 3 and in_ecs == in_ssm
    iam = ansible_lab.client("iam")
    iam.delete_role_policy(RoleName=rollout.ROLE, PolicyName=HOST_EXTRA_POLICY_NAME)
    run = ansible_lab.run("decommission.yml", "--limit", THREE)
    assert run.rc == 0, run.output[-6000:]
    assert registrations(ansible_lab) == (set(), set())
    # The hosts could not remove their SSM side; the controller's registrar did.
    assert "Deregister centrally" in run.output
