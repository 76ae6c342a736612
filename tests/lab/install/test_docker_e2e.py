"""The default Docker path on real lab hosts: docker.io from Debian through the lab's package
proxy, dockerd inside the nspawn host, a lab task as a real container, and a dockerd crash
seen by health and recovered by systemd. Each test uses a fresh host of one lab."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab
from tests.conftest import wait_for

pytestmark = pytest.mark.lab

CLUSTER = "dock"
TASK_LABEL = "com.amazonaws.ecs.task-arn"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aadock").running(2) as lab:
        yield lab


@pytest.fixture(scope="module")
def activation(lab: Lab) -> rollout.LabActivation:
    return rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 10)


def install(lab: Lab, host: str, activation: rollout.LabActivation, config: str) -> dict[str, Any]:
    lab.install_product(host)
    rollout.write_config(lab, host, config)
    code, result, err = rollout.install(lab, host, activation)
    assert code == 0, err[-3000:]
    return result


def sh(lab: Lab, host: str, *argv: str) -> str:
    return lab.exec(host, list(argv)).stdout.decode()


def container_instance(lab: Lab, host: str) -> dict[str, Any]:
    ecs = rollout.lab_client(lab.control_plane_url(), "ecs", lab.region)
    ident = json.loads(sh(lab, host, "cat", "/var/lib/amazon/ssm/registration"))
    arns = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
    cis = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)[
        "containerInstances"]
    return next(c for c in cis if c["ec2InstanceId"] == ident["ManagedInstanceID"])


def task_containers(lab: Lab, host: str) -> list[dict[str, str]]:
    out = sh(lab, host, "docker", "ps", "--filter", f"label={TASK_LABEL}",
             "--format", "{{json .}}")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_default_install_puts_docker_io_on_through_the_lab_proxy_and_runs_a_task_container(
        lab: Lab, activation: rollout.LabActivation) -> None:
    url = lab.control_plane_url()
    result = install(lab, "n1", activation, rollout.node_config(url, lab.region, CLUSTER))
    assert "docker-package" in result["changes"]
    # docker.io came from Debian, through the proxy on the lab bridge (the only route out).
    status = sh(lab, "n1", "dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", "docker.io")
    assert status.startswith("installed 20.10")
    policy = sh(lab, "n1", "apt-cache", "policy", "docker.io")
    gateway = lab.status()["gateway"]
    assert f"http://{gateway}:8080/debian/" in policy, policy
    assert lab.apt_cache_stats().get("hits", 0) + lab.apt_cache_stats().get("misses", 0) > 0
    assert sh(lab, "n1", "systemctl", "is-active", "docker").strip() == "active"
    assert sh(lab, "n1", "docker", "info", "--format", "{{.Driver}}").strip() == "overlay2"

    ci = wait_for("the ACS session with the engine's version", lambda: (
        c if (c := container_instance(lab, "n1"))["versionInfo"].get("dockerVersion") else None))
    assert ci["status"] == "ACTIVE" and ci["agentConnected"] is True
    engine = sh(lab, "n1", "docker", "version", "--format", "{{.Server.Version}}").strip()
    assert ci["versionInfo"]["dockerVersion"] == f"DockerVersion: {engine}"
    # The double read the engine's API range: Docker 20.10 serves up to API 1.41.
    names = {a["name"] for a in ci["attributes"]}
    assert "com.amazonaws.ecs.capability.docker-remote-api.1.41" in names
    assert "com.amazonaws.ecs.capability.docker-remote-api.1.42" not in names

    running = wait_for("a lab task container", lambda: task_containers(lab, "n1"))
    assert running[0]["Image"] == "anywhere-lab/task:1"
    task_arn = json.loads(sh(lab, "n1", "docker", "inspect", running[0]["ID"]))[0][
        "Config"]["Labels"][TASK_LABEL]
    tasks = json.loads(sh(lab, "n1", "python3", "-c", "import urllib.request; print(urllib."
                          "request.urlopen('http://127.0.0.1:51678/v1/tasks').read().decode())"))
    assert [t["Arn"] for t in tasks["Tasks"]] == [task_arn]
    wait_for("ECS to count the reported task",
             lambda: container_instance(lab, "n1")["runningTasksCount"] == 1, timeout=30)


def test_killed_dockerd_comes_back_and_health_shows_the_outage_then_the_recovery(
        lab: Lab, activation: rollout.LabActivation) -> None:
    url = lab.control_plane_url()
    # A 1 s supervisor interval: dockerd is back within seconds, the probes must see the gap.
    config = rollout.node_config(url, lab.region, CLUSTER).replace(
        "interval_seconds = 5", "interval_seconds = 1")
    install(lab, "n2", activation, config)
    wait_for("a lab task container", lambda: task_containers(lab, "n2"))

    def docker_checks() -> dict[str, str]:
        doc = json.loads(lab.exec("n2", ["anywhere-agent", "health", "--format", "json"],
                                  check=False).stdout)
        return {c["name"]: c["status"] for c in doc["checks"]
                if c["name"] in ("unit_docker", "docker_ping")}

    wait_for("healthy Docker checks",
             lambda: docker_checks() == {"unit_docker": "OK", "docker_ping": "OK"})
    # Debian's unit restarts dockerd after 2 s; a loaded 2-core machine can stall the
    # supervisor that long, so the restart waits 5 s here (a runtime drop-in, gone at reboot).
    sh(lab, "n2", "mkdir", "-p", "/run/systemd/system/docker.service.d")
    lab.exec("n2", ["dd", "of=/run/systemd/system/docker.service.d/slow-restart.conf",
                    "status=none"], input=b"[Service]\nRestartSec=5s\n")
    sh(lab, "n2", "systemctl", "daemon-reload")
    before = sh(lab, "n2", "systemctl", "show", "-p", "MainPID", "--value", "docker").strip()
    sh(lab, "n2", "kill", "-KILL", before)

    seen: list[dict[str, str]] = []

    def recovered() -> bool:
        seen.append(docker_checks())
        outage = any(set(s.values()) - {"OK"} for s in seen)
        return outage and seen[-1] == {"unit_docker": "OK", "docker_ping": "OK"}

    wait_for("the outage, then the recovery, in health", recovered, timeout=60,
             detail=lambda: f"health saw {seen[:3]} ... {seen[-3:]}")
    after = sh(lab, "n2", "systemctl", "show", "-p", "MainPID", "--value", "docker").strip()
    assert after not in ("", "0", before)
    assert sh(lab, "n2", "systemctl", "is-active", "docker").strip() == "active"
    # The task's container died with dockerd; the agent reports it and runs a new one.
    wait_for("a task container again", lambda: task_containers(lab, "n2"))
    wait_for("ECS to count one task again",
             lambda: container_instance(lab, "n2")["runningTasksCount"] == 1, timeout=30)
