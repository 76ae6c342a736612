"""The REAL amazon-ssm-agent and amazon-ecs-agent against the lab: issue 10's six levels.

One node serves the whole module and the tests run in file order: level 1 (register), 3 (ECS
registration), 5 (our status/health/supervisor on the agents' files), then the watched window
that levels 2 and 6 judge, then level 4, which stops the ECS agent, and last a check that no
agent tried to reach anything beyond the lab.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conformance_node import CLUSTER, REGION, RealNode, Sample, Window
from real_agents import wait_for

pytestmark = pytest.mark.conformance

SSM_DIR = "/var/lib/amazon/ssm"


def _mode(node: RealNode, inside: str) -> int:
    return stat.S_IMODE(node.ns.path(inside).stat().st_mode)


def _json(node: RealNode, inside: str) -> Any:
    return json.loads(node.ns.path(inside).read_text())


def _show(samples: list[Sample]) -> str:
    return "; ".join(f"t={s.at:.0f}s ping={s.ping_status} connected={s.agent_connected} "
                     f"acs_up={s.acs_up} ssm_alive={s.ssm_agent_alive} "
                     f"ecs_alive={s.ecs_agent_alive}" for s in samples[:8])


def _local_addresses() -> set[str]:
    shown = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True,
                           check=True).stdout
    return {line.split()[3].split("/")[0] for line in shown.splitlines()
            if len(line.split()) > 3}


def _os_release(key: str) -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        name, _, value = line.partition("=")
        if name == key:
            return value.strip().strip('"')
    return ""


def _checks(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in health.get("checks", [])}


# -- level 1 --------------------------------------------------------------------------------


def test_register_writes_the_ssm_agents_registration_and_vault_files(registered: RealNode) -> None:
    node = registered
    assert node.register_result is not None and node.register_result.returncode == 0
    assert re.fullmatch(r"mi-[0-9a-f]{17}", node.instance_id), node.instance_id

    registration = _json(node, f"{SSM_DIR}/registration")
    assert registration["ManagedInstanceID"] == node.instance_id
    assert registration["Region"] == REGION
    key = _json(node, f"{SSM_DIR}/Vault/Store/RegistrationKey")
    assert key["instanceID"] == node.instance_id and key["region"] == REGION
    assert key["privateKeyType"] == "Rsa" and key["privateKey"]
    manifest = _json(node, f"{SSM_DIR}/Vault/Manifest")
    assert set(manifest) >= {"RegistrationKey", "InstanceFingerprint"}
    fingerprint = _json(node, f"{SSM_DIR}/Vault/Store/InstanceFingerprint")
    assert fingerprint["fingerprint"] and fingerprint["hardwareHash"]
    for secret in ("registration", "Vault/Store/RegistrationKey",
                   "Vault/Store/InstanceFingerprint"):
        assert _mode(node, f"{SSM_DIR}/{secret}") == 0o600, secret

    info = node.instance_info()
    assert info is not None, "the lab does not list the instance the agent registered"
    assert info["ActivationId"] == node.activation_id
    # Written to the namespace's overlay, not to the machine.
    assert (node.work / "upper/var/lib/amazon/ssm/registration").is_file()
    assert not Path(f"{SSM_DIR}/registration").exists() or \
        Path(f"{SSM_DIR}/registration").read_text() != node.ns.path(
            f"{SSM_DIR}/registration").read_text()


# -- level 3 --------------------------------------------------------------------------------


def test_ecs_agent_registers_as_an_external_instance_and_introspection_shows_its_arn(
        ecs_running: RealNode) -> None:
    node = ecs_running
    meta = node.introspection()
    assert meta is not None
    arn = meta["ContainerInstanceArn"]
    assert arn.startswith(f"arn:aws:ecs:{REGION}:") and f"/{CLUSTER}/" in arn
    assert str(meta["Cluster"]).rsplit("/", 1)[-1] == CLUSTER
    assert str(meta["Version"]).startswith("Amazon ECS Agent - v")

    ci = node.container_instance()
    assert ci is not None, "the lab lists no container instance for the host's mi- ID"
    assert ci["containerInstanceArn"] == arn
    assert ci["ec2InstanceId"] == node.instance_id
    assert ci["status"] == "ACTIVE"
    names = {a["name"] for a in ci.get("attributes", [])}
    assert "ecs.capability.external" in names
    assert {"ecs.os-type", "ecs.cpu-architecture"} <= names


# -- level 5 --------------------------------------------------------------------------------


def test_status_health_and_the_supervisor_read_the_real_agents_files(
        ecs_running: RealNode) -> None:
    node = ecs_running
    node.ns.write("/etc/anywhere-agent/agent.toml",
                  f'region = "{REGION}"\ncluster = "{CLUSTER}"\ndocker_source = "distro"\n')
    arn = (node.introspection() or {})["ContainerInstanceArn"]
    identity = _json(node, f"{SSM_DIR}/runtimeconfig/identity_config.json")

    status = node.node_cli("status", "--json")
    assert status.returncode == 0, status.stderr
    st = json.loads(status.stdout)
    assert st["managed_instance_id"] == node.instance_id
    assert st["region"] == REGION
    assert st["container_instance_arn"] == arn
    assert st["introspection"] == "answering"
    assert st["versions"]["ecs_agent"] and "ECS Agent" in st["versions"]["ecs_agent"]
    assert st["credentials"]["present"] is True
    assert st["credentials"]["expires_at"] == identity["CredentialsExpiresAt"]

    # The supervisor reads the ACS session from the real agent's own log lines.
    assert wait_for(node.acs_up, 120), f"no ACS session: {node.acs_events()[-4:]}"
    once = node.node_cli("supervise", "--once")
    checks = _checks(json.loads(once.stdout))
    health = node.node_cli("health", "--format", "json")
    stored = _checks(json.loads(health.stdout))
    for found in (checks, stored):
        assert found["ssm_registration"]["status"] == "OK", found["ssm_registration"]
        assert node.instance_id in found["ssm_registration"]["summary"]
        assert found["ssm_credentials"]["status"] == "OK", found["ssm_credentials"]
        assert found["ssm_credentials"]["reason"] == "fresh"
        assert found["ecs_introspection"]["status"] == "OK", found["ecs_introspection"]
        assert arn.rsplit("/", 1)[-1] in found["ecs_introspection"]["summary"]
        assert found["docker_ping"]["status"] == "OK", found["docker_ping"]
        assert found["ecs_acs_session"]["reason"] == "connected", found["ecs_acs_session"]
    assert json.loads(health.stdout)["container_instance_arn"] == arn


# -- level 2 --------------------------------------------------------------------------------


def test_ssm_agent_gets_role_credentials_and_stays_online_for_ten_lab_minutes(
        window: Window, ssm_running: RealNode) -> None:
    node = ssm_running
    creds = window.first_credentials
    assert creds.get("aws_secret_access_key") and creds.get("aws_session_token")
    vended = node.plane.ssm.credentials_for(creds["aws_access_key_id"])
    assert vended is not None and vended.instance_id == node.instance_id
    assert _mode(node, "/root/.aws/credentials") == 0o600
    identity = _json(node, f"{SSM_DIR}/runtimeconfig/identity_config.json")
    assert identity["InstanceId"] == node.instance_id
    expires = datetime.fromisoformat(identity["CredentialsExpiresAt"].replace("Z", "+00:00"))
    assert expires > datetime.now(timezone.utc)

    # What the agent sent in UpdateInstanceInformation, as SSM records it.
    info = node.instance_info() or {}
    assert info.get("ComputerName") == socket.gethostname()
    assert info.get("IPAddress") in _local_addresses()
    assert info.get("PlatformName") == _os_release("NAME")
    version = node.ns.run(["/usr/bin/amazon-ssm-agent", "-version"], node.agent_env())
    assert info.get("AgentVersion") == version.stdout.decode().split()[-1]

    assert window.samples[-1].at >= window.minutes * 60
    node.measured["window_lab_s"] = round(window.samples[-1].at, 1)
    node.measured["window_samples"] = len(window.samples)
    offline = window.failures(lambda s: s.ping_status == "Online" and s.ssm_agent_alive)
    assert not offline, (f"{len(offline)} of {len(window.samples)} samples not Online: "
                         + _show(offline))


# -- level 6 --------------------------------------------------------------------------------


def test_registrar_wait_and_fleet_report_the_host_joined_for_ten_lab_minutes(
        window: Window, ecs_running: RealNode) -> None:
    for wait in (window.wait_first, window.wait_last):
        assert wait.returncode == 0, wait.stderr
        doc = json.loads(wait.stdout)
        assert doc["ready"] is True
        assert [h["reason"] for h in doc["hosts"]] == ["ready"]

    def joined(s: Sample) -> bool:
        row = s.fleet_row or {}
        return (row.get("ping_status") == "Online" and row.get("agent_connected") is True
                and row.get("container_instance_status") == "ACTIVE" and row.get("flags") == [])

    assert window.samples[-1].at >= window.minutes * 60
    apart = window.failures(joined)
    assert not apart, (f"{len(apart)} of {len(window.samples)} fleet views do not show the "
                       f"host joined: {[s.fleet_row for s in apart[:4]]}")


# -- level 4 --------------------------------------------------------------------------------


def _until_connected(node: RealNode, wanted: bool, limit: float) -> float:
    """Lab seconds until DescribeContainerInstances says agentConnected == wanted (or limit)."""
    clock = node.plane.clock
    since = clock.now()
    while clock.now() - since < limit:
        if (node.container_instance() or {}).get("agentConnected") is wanted:
            break
        time.sleep(clock.real_seconds(5) if hasattr(clock, "real_seconds") else 5)
    return clock.now() - since


def test_agent_connected_follows_the_acs_session_and_drops_within_two_lab_minutes_of_a_stop(
        window: Window, ecs_running: RealNode) -> None:
    node = ecs_running
    assert any(s.acs_up for s in window.samples), (
        "the ECS agent never held an ACS session; its last ACS events: "
        f"{node.acs_events()[-4:]}; lab calls: {node.plane.calls.snapshot()['calls']}")
    lying = window.failures(lambda s: not s.acs_up or s.agent_connected is True)
    assert not lying, f"agentConnected false while the ACS session was up: {_show(lying)}"

    # A hung agent: its socket stays open, but it acks no heartbeat.
    agent = node.ns.processes["ecs-agent"].pid
    os.kill(agent, signal.SIGSTOP)
    try:
        hung = _until_connected(node, False, 240)
    finally:
        os.kill(agent, signal.SIGCONT)
    node.measured["agent_connected_false_after_freeze_lab_s"] = round(hung, 1)
    assert hung <= 150, f"agentConnected still true {hung:.0f} lab s after the agent froze"
    # Thawed, it finds its session gone and dials ACS again.
    back = _until_connected(node, True, 300)
    node.measured["agent_connected_again_after_thaw_lab_s"] = round(back, 1)
    assert back < 300 and node.acs_up(), f"no ACS session {back:.0f} lab s after the thaw"
    # The supervisor's reading of the real log (anywhere_agent.supervise.acs_session): the
    # lost session is a "down" line, the new one an "up" line.
    from anywhere_agent.supervise.acs_session import parse

    events = parse(node.ns.path("/var/log/ecs/ecs-agent.log").read_text(errors="replace"))
    first_up = next(i for i, e in enumerate(events) if e.connected)
    assert any(not e.connected for e in events[first_up:]), events[-6:]
    assert events[-1].connected, events[-6:]

    node.ns.stop("ecs-agent")
    took = _until_connected(node, False, 240)
    node.measured["agent_stop_exit_code"] = node.ns.processes["ecs-agent"].returncode
    node.measured["agent_connected_false_after_stop_lab_s"] = round(took, 1)
    assert took <= 150, f"agentConnected still true {took:.0f} lab s after the agent stopped"


# -- the lab's boundary ---------------------------------------------------------------------


def test_the_agents_call_aws_only_through_the_lab(node: RealNode) -> None:
    # The SSM agent probes instance metadata on every on-prem host (and gets no answer there);
    # any other request that reached the trap was meant for AWS itself.
    imds = [line for line in node.trap.seen if "169.254.169.254" in line]
    elsewhere = [line for line in node.trap.seen if line not in imds]
    info = node.instance_info() or {}
    ci = node.container_instance() or {}
    summary = {"calls": node.plane.calls.snapshot(), "metadata_probes": imds,
               "elsewhere": elsewhere, "acs_events": node.acs_events(),
               "measured": node.measured,
               "ssm_instance": {k: str(info.get(k)) for k in (
                   "PingStatus", "LastPingDateTime", "AgentVersion", "IPAddress",
                   "ComputerName", "PlatformName", "PlatformVersion")},
               "container_instance": {k: ci.get(k) for k in (
                   "status", "agentConnected", "versionInfo")}}
    (node.work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"conformance summary: {node.work / 'summary.json'}")
    assert elsewhere == []
