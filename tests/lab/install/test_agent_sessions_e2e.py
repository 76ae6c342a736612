"""Real cadence on lab hosts: ACS sessions make agentConnected, SSM pings keep hosts Online,
regional endpoints refuse another region's activation (lab clock at 20x)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.errors import ExitCode
from anywhere_agent.lab import rollout
from anywhere_agent.lab.control_plane.admin import LabAdmin
from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

CLUSTER = "sessions"
SCALE = 20.0  # lab seconds per real second: the 5-minute SSM ping comes every 15 s


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aasess", time_scale=SCALE).running(2) as lab:
        rollout.stage(lab, ["n1", "n2"], CLUSTER)
        yield lab


@pytest.fixture(scope="module")
def joined(lab: Lab) -> dict[str, Any]:
    activation = rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 2)
    code, result, err = rollout.install(lab, "n1", activation)
    assert code == 0, (result, err)
    assert result["agent_connected"] is True
    return dict(result)


def ecs_client(lab: Lab) -> Any:
    return rollout.lab_client(lab.control_plane_url(), "ecs", lab.region)


def ssm_info(lab: Lab, instance_id: str, url: str | None = None) -> dict[str, Any]:
    ssm = rollout.lab_client(url or lab.control_plane_url(), "ssm", lab.region)
    found = ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])["InstanceInformationList"]
    return dict(found[0]) if found else {}


def connected(lab: Lab, arn: str) -> bool:
    [ci] = ecs_client(lab).describe_container_instances(
        cluster=CLUSTER, containerInstances=[arn])["containerInstances"]
    return bool(ci["agentConnected"])


def within(seconds: float, check: Callable[[], bool]) -> float:
    """Real seconds until check() holds; fails after `seconds`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.25)
    return time.monotonic() - start


def test_stopping_the_ecs_agent_disconnects_and_a_restart_reconnects(
        lab: Lab, joined: dict[str, Any]) -> None:
    arn = joined["container_instance_arn"]
    assert connected(lab, arn)
    lab.exec("n1", ["systemctl", "stop", "ecs"])
    within(10, lambda: not connected(lab, arn))  # the closed ACS socket, not a timeout
    lab.exec("n1", ["systemctl", "start", "ecs"])
    within(30, lambda: connected(lab, arn))


def test_an_acs_outage_for_one_host_reads_disconnected_until_it_ends(
        lab: Lab, joined: dict[str, Any]) -> None:
    arn, instance_id = joined["container_instance_arn"], joined["managed_instance_id"]
    assert lab.fault("acs-outage", hosts=["n1"])["hosts"] == {"n1": instance_id}
    try:
        within(10, lambda: not connected(lab, arn))
        time.sleep(2)  # the agent keeps re-dialling with backoff and is refused each time
        assert not connected(lab, arn)
        sessions = LabAdmin(lab.control_plane_url()).state()["sessions"]
        assert sessions["acs_refused"] == [instance_id] and sessions["acs_open"] == 0
    finally:
        lab.fault("acs-outage", on=False, hosts=["n1"])
    # The agent's backoff is capped at 2 lab minutes: 6 s at 20x.
    within(30, lambda: connected(lab, arn))


def test_a_healthy_host_stays_online_and_joined_through_twenty_lab_minutes(
        lab: Lab, joined: dict[str, Any], tmp_path: Path) -> None:
    arn, instance_id = joined["container_instance_arn"], joined["managed_instance_id"]
    ip = lab.exec("n1", ["hostname", "-I"]).stdout.decode().split()[0]
    info = ssm_info(lab, instance_id)
    assert info["IPAddress"] == ip and info["IPAddress"] != "127.0.0.1"
    hostname = lab.exec("n1", ["hostname"]).stdout.decode().strip()
    assert info["ComputerName"].split(".")[0] == hostname
    assert info["PlatformName"] == "Debian GNU/Linux"
    admin = LabAdmin(lab.control_plane_url())
    admin.reset_calls()
    start = time.monotonic()
    seen: list[tuple[str, bool]] = []
    while time.monotonic() - start < 20 * 60 / SCALE:
        seen.append((ssm_info(lab, instance_id).get("PingStatus", ""), connected(lab, arn)))
        time.sleep(2)
    assert all(s == ("Online", True) for s in seen), seen
    calls = admin.calls()
    # Real cadence: 20 lab minutes hold 3-5 health pings (every 5 minutes after a random
    # first wait), not one every few seconds; GetMessages is a long poll, not a hot loop.
    assert 3 <= calls.count("ssm", "UpdateInstanceInformation") <= 6, calls.calls
    assert calls.count("ec2messages", "GetMessages") <= 20 * 60 / 15 + 5, calls.calls
    assert calls.count("ecs", "DiscoverPollEndpoint") == 0, calls.calls
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_REGION": lab.region, "AWS_ENDPOINT_URL": lab.control_plane_url(),
                "AWS_ACCESS_KEY_ID": "lab", "AWS_SECRET_ACCESS_KEY": "lab",
                "AWS_CONFIG_FILE": str(tmp_path / "none"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
    cli = [str(Path(sys.executable).parent / "anywhere-agent"), "registrar"]
    wait = subprocess.run([*cli, "wait", "--hosts", instance_id, "--cluster", CLUSTER,
                           "--timeout", "30s", "--interval", "2s", "--json"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert wait.returncode == 0, wait.stdout + wait.stderr
    fleet = subprocess.run([*cli, "fleet", "--cluster", CLUSTER, "--json"], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert fleet.returncode == 0, fleet.stderr
    [row] = [h for h in json.loads(fleet.stdout)["hosts"] if h["instance_id"] == instance_id]
    assert row["ping_status"] == "Online" and row["agent_connected"] is True
    assert row["ip_address"] == ip and not row["flags"]


def test_a_wrong_region_install_fails_at_registration_and_registers_nothing(
        lab: Lab, joined: dict[str, Any]) -> None:
    activation = rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 1)
    other = "eu-west-1"
    url = lab.region_url(other)
    # As on AWS, the other region's endpoints come with the other region.
    rollout.write_config(lab, "n2", rollout.node_config(url, other, CLUSTER))
    code, result, err = rollout.install(lab, "n2", activation)
    assert code == ExitCode.CLOUD, (result, err)
    assert "SSM registration failed (wrong region)" in json.dumps(result), result
    assert other in json.dumps(result)
    assert lab.exec("n2", ["test", "-e", "/var/lib/amazon/ssm/registration"],
                    check=False).returncode != 0
    for region_url in (lab.control_plane_url(), url):
        ssm = rollout.lab_client(region_url, "ssm", other if region_url == url else lab.region)
        names = [i.get("ComputerName", "").split(".")[0]
                 for i in ssm.describe_instance_information()["InstanceInformationList"]]
        assert lab.exec("n2", ["hostname"]).stdout.decode().strip() not in names
    [described] = rollout.lab_client(lab.control_plane_url(), "ssm", lab.region) \
        .describe_activations(Filters=[{"FilterKey": "ActivationIds",
                                        "FilterValues": [activation.activation_id]}]
                              )["ActivationList"]
    assert described["RegistrationsCount"] == 0
