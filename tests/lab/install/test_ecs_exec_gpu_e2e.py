"""ECS Exec and GPU hosts on real systemd lab hosts: the CA bundle and SSM binaries from the
lab's S3 layout (the `aws` source), health and status saying ECS Exec is ready, a GPU preflight
on a host without a GPU, and a GPU install with stand-in nvidia-smi and runtime."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from anywhere_agent.errors import ExitCode
from anywhere_agent.host import ecs_exec
from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

CLUSTER = "execgpu"
KEY = "/etc/anywhere-agent/keys/lab-signing.asc"
# Stand-ins a GPU host's packages would bring: NVIDIA's driver tool and container runtime.
NVIDIA_SMI = """#!/bin/sh
# LAB STAND-IN for nvidia-smi (no GPU in the lab): answers the query install's preflight makes.
echo "550.54.15, NVIDIA L4"
"""
RUNTIME = "#!/bin/sh\n# LAB STAND-IN for nvidia-container-runtime\nexec runc \"$@\"\n"


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, str]]:
    lab = Lab(name="aaexec")
    info = lab.up(2)
    try:
        assert info.package_url
        for host in ("n1", "n2"):
            lab.install_product(host)
        yield lab, info.package_url
    finally:
        lab.down()  # raises if anything of the lab is left


@pytest.fixture(scope="module")
def activation(lab: tuple[Lab, str]) -> rollout.LabActivation:
    return rollout.prepare(lab[0].control_plane_url(), lab[0].region, CLUSTER, 4)


def sh(lab: Lab, host: str, *argv: str) -> str:
    return lab.ssh(host, list(argv)).stdout.decode()


def stat(lab: Lab, host: str, path: str) -> str:
    """`mode owner size` of a node path."""
    return sh(lab, host, "stat", "-c", "%a %U %s", path).strip()


def json_of(lab: Lab, host: str, *argv: str) -> Any:
    proc = lab.ssh(host, list(argv), check=False)
    return proc.returncode, json.loads(proc.stdout.decode() or "{}")


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def health_check(lab: Lab, host: str, name: str) -> dict[str, Any] | None:
    _, data = json_of(lab, host, "anywhere-agent", "health", "--format", "json")
    return next((c for c in data.get("checks", []) if c["name"] == name), None)


def test_install_from_the_aws_layout_puts_ecs_exec_in_place_and_health_says_ready(
        lab: tuple[Lab, str], activation: rollout.LabActivation) -> None:
    the_lab, package_url = lab
    url = the_lab.control_plane_url()
    # The aws source pointed at the lab's copy of AWS's S3 layout, trusting the lab's key.
    key = urllib.request.urlopen(f"{package_url}/keys/anywhere-lab-signing.asc",
                                 timeout=10).read()
    the_lab.ssh("n1", ["mkdir", "-p", "/etc/anywhere-agent/keys"])
    the_lab.ssh("n1", ["dd", f"of={KEY}", "status=none"], input=key)
    config = rollout.node_config(url, the_lab.region, CLUSTER, "none").replace(
        'package_source = "repo"\n',
        f'package_source = "aws"\npackage_base_url = "{package_url}/s3"\n')
    rollout.write_config(the_lab, "n1", config)
    code, result, err = rollout.install(the_lab, "n1", activation)
    assert code == 0, (result, err[-2000:])
    assert {"ecs-exec-certs", "ecs-exec-binaries"} <= set(result["changes"])

    version = ecs_exec.SSM_BINARIES_VERSION  # the version AWS's script pins, from S3
    assert stat(the_lab, "n1", ecs_exec.CA_BUNDLE).split()[:2] == ["400", "root"]
    assert sh(the_lab, "n1", "cmp", ecs_exec.CA_BUNDLE, "/etc/ssl/certs/ca-certificates.crt") \
        == ""
    assert sh(the_lab, "n1", "ls", ecs_exec.BIN_DIR).split() == [version]
    for name in ecs_exec.BINARIES:
        path = f"{ecs_exec.BIN_DIR}/{version}/{name}"
        assert stat(the_lab, "n1", path).split()[:2] == ["755", "root"]
        # The lab's stand-ins say which tarball they came from.
        assert sh(the_lab, "n1", path, "-version").strip() == f"{name} version: {version}"

    _, status = json_of(the_lab, "n1", "anywhere-agent", "status", "--json")
    assert status["ecs_exec"] == {"ready": True, "version": version,
                                  "ca_bundle": ecs_exec.CA_BUNDLE, "problems": []}
    # The agent (double, by the real agent's rule) offered ECS Exec at its first registration.
    ecs = rollout.lab_client(url, "ecs", the_lab.region)
    [ci] = ecs.describe_container_instances(
        cluster=CLUSTER, containerInstances=[status["container_instance_arn"]])[
        "containerInstances"]
    assert "ecs.capability.execute-command" in {a["name"] for a in ci["attributes"]}
    check = wait_for("health's ecs_exec check", lambda: health_check(the_lab, "n1", "ecs_exec"))
    assert check["status"] == "OK", check
    assert version in check["summary"]

    # A re-run changes nothing; a loosened bundle is tightened and health follows.
    code, again, err = rollout.install(the_lab, "n1", None)
    assert code == 0 and not ({"ecs-exec-certs", "ecs-exec-binaries"} & set(again["changes"]))
    the_lab.ssh("n1", ["chmod", "0644", ecs_exec.CA_BUNDLE])
    _, status = json_of(the_lab, "n1", "anywhere-agent", "status", "--json")
    assert status["ecs_exec"]["problems"] == [f"{ecs_exec.CA_BUNDLE} has mode 0644, not 0400"]
    code, again, err = rollout.install(the_lab, "n1", None)
    assert code == 0 and "ecs-exec-certs" in again["changes"], (again, err[-2000:])
    assert stat(the_lab, "n1", ecs_exec.CA_BUNDLE).split()[0] == "400"


def test_gpu_preflight_on_a_host_without_a_gpu_names_each_missing_part(
        lab: tuple[Lab, str]) -> None:
    the_lab, _ = lab
    rollout.write_config(the_lab, "n2", rollout.node_config(
        the_lab.control_plane_url(), the_lab.region, CLUSTER, "none"))
    code, report = json_of(the_lab, "n2", "anywhere-agent", "preflight", "--json",
                           "--no-network", "--enable-gpu")
    assert code == ExitCode.PREFLIGHT
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["gpu_driver"]["status"] == "fail"
    assert checks["gpu_driver"]["summary"] == "nvidia-smi is not installed (no NVIDIA driver)"
    assert "NVIDIA driver" in checks["gpu_driver"]["fix"]
    assert checks["gpu_container_runtime"]["status"] == "fail"
    assert "nvidia-container-toolkit" in checks["gpu_container_runtime"]["fix"]
    assert checks["gpu_docker_runtime"]["status"] == "fail"
    assert "nvidia-ctk runtime configure --runtime=docker" in checks["gpu_docker_runtime"]["fix"]
    assert checks["ca_bundle"]["status"] == "pass"
    # And install refuses before changing anything.
    code, result, err = rollout.install(the_lab, "n2", None, extra=("--enable-gpu",))
    assert code == ExitCode.PREFLIGHT, (result, err[-1000:])
    assert the_lab.ssh("n2", ["test", "-e", "/var/lib/ecs/ecs.config"], check=False) \
        .returncode != 0


def test_a_gpu_host_with_stand_in_driver_and_runtime_installs_with_gpu_support(
        lab: tuple[Lab, str], activation: rollout.LabActivation) -> None:
    the_lab, _ = lab
    for path, text in (("/usr/local/bin/nvidia-smi", NVIDIA_SMI),
                       ("/usr/bin/nvidia-container-runtime", RUNTIME)):
        the_lab.ssh("n2", ["dd", f"of={path}", "status=none"], input=text.encode())
        the_lab.ssh("n2", ["chmod", "0755", path])
    rollout.write_config(the_lab, "n2", rollout.node_config(
        the_lab.control_plane_url(), the_lab.region, CLUSTER, "distro"))
    code, report = json_of(the_lab, "n2", "anywhere-agent", "preflight", "--json",
                           "--no-network", "--enable-gpu")
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["gpu_driver"]["status"] == "pass"
    assert checks["gpu_driver"]["summary"].startswith("NVIDIA driver 550.54.15, 1 GPU(s)")
    assert checks["gpu_container_runtime"]["summary"] == "/usr/bin/nvidia-container-runtime"
    assert checks["gpu_docker_runtime"]["status"] == "warn"  # install adds it

    code, result, err = rollout.install(the_lab, "n2", activation, extra=("--enable-gpu",))
    assert code == 0, (result, err[-2000:])
    assert "gpu-docker-runtime" in result["changes"]
    daemon = json.loads(sh(the_lab, "n2", "cat", "/etc/docker/daemon.json"))
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    # Docker was (re)started with it: `docker info` lists the runtime.
    runtimes = sh(the_lab, "n2", "docker", "info", "--format", "{{json .Runtimes}}")
    assert "nvidia" in json.loads(runtimes)
    assert "ECS_ENABLE_GPU_SUPPORT=true" in sh(the_lab, "n2", "cat", "/var/lib/ecs/ecs.config")
    code, report = json_of(the_lab, "n2", "anywhere-agent", "preflight", "--json",
                           "--no-network", "--enable-gpu")
    assert {c["name"]: c["status"] for c in report["checks"]}["gpu_docker_runtime"] == "pass"
    # The repo source gives ECS Exec the SSM package's own binaries, under its version.
    _, status = json_of(the_lab, "n2", "anywhere-agent", "status", "--json")
    assert status["ecs_exec"]["ready"] and status["ecs_exec"]["version"] == "3.3.1802.0"


def test_uninstall_takes_away_ecs_exec_and_the_runtime_install_added(
        lab: tuple[Lab, str]) -> None:
    the_lab, _ = lab
    proc = the_lab.ssh("n2", ["anywhere-agent", "uninstall", "--force"], check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert the_lab.ssh("n2", ["test", "-e", ecs_exec.ROOT], check=False).returncode != 0
    # install created daemon.json for the runtime alone, so it goes too.
    assert the_lab.ssh("n2", ["test", "-e", "/etc/docker/daemon.json"],
                       check=False).returncode != 0
