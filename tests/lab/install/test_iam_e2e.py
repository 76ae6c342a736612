"""On lab hosts under IAM enforcement: hosts hold only what `registrar ensure` gives their role
(the two AWS managed policies and iam/host-role-extra.json), the operator only
iam/registrar.json. What enforcement exposed: wrong cluster/region undo, re-registration after
a central deregistration, and reporting."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from anywhere_agent.errors import ExitCode
from anywhere_agent.lab import rollout
from anywhere_agent.lab.operators import AccessKey, create_operator, root_client
from anywhere_agent.lab.orchestrator import Lab
from anywhere_agent.registrar.ensure import HOST_EXTRA_POLICY_NAME

pytestmark = pytest.mark.lab

CLUSTER = "iam"
REPORTING = ('\n[reporting]\ncloudwatch = true\nattribute = true\n')


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aaiam").running(3) as lab:
        rollout.stage(lab, ["n1", "n2", "n3"])
        yield lab


@pytest.fixture(scope="module")
def activation(lab: Lab) -> rollout.LabActivation:
    return rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 20)


@pytest.fixture(scope="module")
def operator(lab: Lab) -> AccessKey:
    return create_operator(lab.control_plane_url(), "registrar", lab.region)


def config(lab: Lab, extra: str = "") -> str:
    url = lab.control_plane_url()
    return (rollout.node_config(url, lab.region, CLUSTER)
            .replace("[endpoints]\n", f'[endpoints]\ncloudwatch = "{url}"\n') + extra)


def fresh(lab: Lab, host: str, extra: str = "") -> None:
    lab.ssh(host, ["anywhere-agent", "uninstall", "--force"], check=False)
    rollout.write_config(lab, host, config(lab, extra))


def registered(lab: Lab, host: str) -> list[str]:
    """Managed instances whose computer is `host`."""
    name = lab.exec(host, ["hostname"]).stdout.decode().strip()
    ssm = rollout.lab_client(lab.control_plane_url(), "ssm", lab.region)
    infos = ssm.describe_instance_information(MaxResults=50)["InstanceInformationList"]
    return [i["InstanceId"] for i in infos if i.get("ComputerName", "").split(".")[0] == name]


def registration_on_host(lab: Lab, host: str) -> str:
    out = lab.exec(host, ["cat", "/var/lib/amazon/ssm/registration"], check=False).stdout
    return str(json.loads(out or b"{}").get("ManagedInstanceID", ""))


def operator_cli(lab: Lab, operator: AccessKey, *args: str) -> Any:
    import subprocess
    import sys

    env = {**os.environ, **operator.environment(), "AWS_REGION": lab.region,
           "AWS_ENDPOINT_URL": lab.control_plane_url()}
    env.pop("AWS_PROFILE", None)
    return subprocess.run([sys.executable, "-m", "anywhere_agent", "registrar", *args],
                          env=env, capture_output=True, text=True, check=False, timeout=120)


def test_a_wrong_cluster_exits_6_and_leaves_no_registration_in_ssm(
        lab: Lab, activation: Any) -> None:
    fresh(lab, "n1")
    code, result, err = rollout.install(lab, "n1", activation,
                                        extra=("--cluster", "no-such-cluster"))
    assert code == ExitCode.CLOUD, (result, err)
    assert "deregistered again" in result["message"], result
    assert registered(lab, "n1") == []
    assert registration_on_host(lab, "n1") == ""
    assert lab.exec("n1", ["test", "-e", "/var/lib/amazon/ssm/Vault/Store/RegistrationKey"],
                    check=False).returncode != 0


def test_a_host_deregistered_centrally_is_registered_again_by_the_next_install(
        lab: Lab, activation: Any, operator: AccessKey) -> None:
    fresh(lab, "n2")
    code, first, err = rollout.install(lab, "n2", activation)
    assert code == 0, err
    old = first["managed_instance_id"]
    # --force: the lab's ECS agent runs a task; a central removal does not wait for it.
    proc = operator_cli(lab, operator, "deregister", "--cluster", CLUSTER, "--force", old,
                        "--json")
    assert proc.returncode == 0, proc.stderr
    assert registered(lab, "n2") == []
    code, again, err = rollout.install(lab, "n2", activation)
    assert code == 0, err
    assert again["managed_instance_id"] != old
    assert again["previous_identity"]["managed_instance_id"] == old
    assert "deregistered centrally" in again["previous_identity"]["retired_reason"]
    assert registered(lab, "n2") == [again["managed_instance_id"]]
    assert again["cloud_verified"] is True


def _health(lab: Lab, host: str) -> dict[str, Any]:
    proc = lab.exec(host, ["anywhere-agent", "health", "--format", "json"], check=False)
    return dict(json.loads(proc.stdout.decode() or "{}"))


def _reporting_check(lab: Lab, host: str, want: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    check: dict[str, Any] = {}
    while time.monotonic() < deadline:
        checks = {c["name"]: c for c in _health(lab, host).get("checks", [])}
        check = checks.get("reporting", {})
        if check.get("status") == want:
            return check
        time.sleep(2)
    raise AssertionError(f"reporting check never became {want}: {check}")


def test_reporting_works_with_the_published_policy_and_health_names_the_denial_without_it(
        lab: Lab, activation: Any) -> None:
    fresh(lab, "n3", REPORTING)
    code, result, err = rollout.install(lab, "n3", activation)
    assert code == 0, err
    url = lab.control_plane_url()
    ok = _reporting_check(lab, "n3", "OK")
    assert "cloudwatch:PutMetricData" in ok["summary"] and "ecs:PutAttributes" in ok["summary"]
    metrics = root_client(url, "cloudwatch", lab.region).list_metrics(
        Namespace="ECSAnywhere/Agent")["Metrics"]
    assert {m["MetricName"] for m in metrics} >= {"HealthStatus"}
    [instance] = root_client(url, "ecs", lab.region).describe_container_instances(
        cluster=CLUSTER, containerInstances=[result["container_instance_arn"]])[
        "containerInstances"]
    assert "anywhere-agent.health" in {a["name"] for a in instance["attributes"]}
    iam = root_client(url, "iam", lab.region)
    saved = iam.get_role_policy(RoleName=rollout.ROLE, PolicyName=HOST_EXTRA_POLICY_NAME)
    iam.delete_role_policy(RoleName=rollout.ROLE, PolicyName=HOST_EXTRA_POLICY_NAME)
    try:
        lab.exec("n3", ["systemctl", "restart", "anywhere-agent"])
        denied = _reporting_check(lab, "n3", "WARNING")
        assert "denied (AccessDeniedException)" in denied["summary"]
        assert "cloudwatch:PutMetricData" in denied["summary"]
        assert "iam/host-role-extra.json" in denied["fix"]
    finally:
        iam.put_role_policy(RoleName=rollout.ROLE, PolicyName=HOST_EXTRA_POLICY_NAME,
                            PolicyDocument=json.dumps(saved["PolicyDocument"]))
