"""Both doubles against the lab's real control plane (moto + extension), run as its own process."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doubles_helpers import (
    ECS,
    PYTHON,
    SSM,
    Processes,
    double_env,
    free_port,
    run_ssm,
    wait_until,
    write_ssm_config,
)

from anywhere_agent.lab.control_plane.principals import (
    ROOT_ACCESS_KEY_ID,
    ROOT_SECRET_ACCESS_KEY,
)

boto3 = pytest.importorskip("boto3")
pytest.importorskip("anywhere_agent.lab.control_plane.server")

REGION = "us-east-1"
TRUST_SSM = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ssm.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@pytest.fixture
def plane_url(tmp_path: Path, processes: Processes) -> Iterator[str]:
    # A subprocess, because moto keeps its state in module globals: one control plane per process.
    port = free_port()
    processes.start(
        [
            sys.executable,
            "-m",
            "anywhere_agent.lab.control_plane",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--region",
            REGION,
        ],
        dict(os.environ),
        tmp_path / "control-plane.out",
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "/_lab/state", timeout=1):
                return True
        except OSError:
            return False

    wait_until(up, timeout=30, what="control plane")
    yield url


def _client(url: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ROOT_ACCESS_KEY_ID,  # the operator bootstraps the lab as root
        aws_secret_access_key=ROOT_SECRET_ACCESS_KEY,
    )


def test_a_host_joins_the_cluster_through_both_doubles(
    plane_url: str, lab_root: Path, processes: Processes, tmp_path: Path
) -> None:
    iam = _client(plane_url, "iam")
    iam.create_role(RoleName="ecsAnywhereRole", AssumeRolePolicyDocument=TRUST_SSM)
    for policy in ("AmazonSSMManagedInstanceCore",
                   "service-role/AmazonEC2ContainerServiceforEC2Role"):
        iam.attach_role_policy(RoleName="ecsAnywhereRole",
                               PolicyArn=f"arn:aws:iam::aws:policy/{policy}")
    activation = _client(plane_url, "ssm").create_activation(
        IamRole="ecsAnywhereRole", RegistrationLimit=1
    )
    _client(plane_url, "ecs").create_cluster(clusterName="lab")

    write_ssm_config(lab_root, plane_url)
    reg = run_ssm(
        lab_root,
        "-register",
        "-code",
        activation["ActivationCode"],
        "-id",
        activation["ActivationId"],
        "-region",
        REGION,
        "-y",
    )
    assert reg.returncode == 0, reg.stdout + reg.stderr
    instance_id = json.loads((lab_root / "var/lib/amazon/ssm/registration").read_text())[
        "ManagedInstanceID"
    ]

    processes.start(
        [PYTHON, str(SSM)],
        double_env(lab_root, ANYWHERE_LAB_SSM_HEARTBEAT_SECONDS="1"),
        tmp_path / "ssm.out",
    )
    wait_until((lab_root / "root/.aws/credentials").exists, what="role credentials")

    (lab_root / "var/lib/ecs").mkdir(parents=True)
    (lab_root / "etc/ecs").mkdir(parents=True)
    (lab_root / "var/lib/ecs/ecs.config").write_text(
        f"AWS_DEFAULT_REGION={REGION}\nECS_EXTERNAL=true\nECS_BACKEND_HOST={plane_url}\n"
    )
    (lab_root / "etc/ecs/ecs.config").write_text("ECS_CLUSTER=lab\n")
    port = free_port()
    processes.start(
        [PYTHON, str(ECS), "start"],
        double_env(
            lab_root,
            ANYWHERE_LAB_ECS_INTROSPECTION_PORT=str(port),
            ANYWHERE_LAB_ECS_HEARTBEAT_SECONDS="1",
        ),
        tmp_path / "ecs.out",
    )

    def arn() -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metadata", timeout=2) as resp:
                return json.loads(resp.read())["ContainerInstanceArn"]
        except OSError:
            return None

    container_arn = wait_until(arn, timeout=30, what="container instance ARN")
    ecs = _client(plane_url, "ecs")
    [ci] = ecs.describe_container_instances(cluster="lab", containerInstances=[container_arn])[
        "containerInstances"
    ]
    assert ci["ec2InstanceId"] == instance_id
    assert "ecs.capability.external" in {a["name"] for a in ci["attributes"]}
    wait_until(
        lambda: ecs.describe_container_instances(cluster="lab", containerInstances=[container_arn])[
            "containerInstances"
        ][0]["agentConnected"],
        timeout=15,
        what="agentConnected",
    )
    info = _client(plane_url, "ssm").describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
    )["InstanceInformationList"]
    assert info and info[0]["PingStatus"] == "Online"
    # The supervisor reads the same session from the agent's log, with no cloud rights.
    from anywhere_agent.config import Config
    from anywhere_agent.host.gateway import Host
    from anywhere_agent.supervise.acs_session import AcsSessionProbe
    from anywhere_agent.supervise.clock import SystemClock

    probe = AcsSessionProbe(Host(lab_root), Config(), SystemClock(), 15.0,
                            fetch=lambda url, timeout: (200, b"{}"))
    [check] = probe().checks
    assert (check.status.name, check.reason) == ("OK", "connected"), check
