"""Preflight's ECS Exec CA bundle check and the GPU checks, on a temp root with a scripted
nvidia-smi."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anywhere_agent.config import Config
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.preflight import PreflightReport
from anywhere_agent.preflight.model import CheckResult

Node = Any  # conftest's Node: write/mkdir/remove under the temp root
PEM_BUNDLE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
Run = Callable[..., PreflightReport]
Pick = Callable[[PreflightReport, str], CheckResult]
GPU_CHECKS = ("gpu_driver", "gpu_container_runtime", "gpu_docker_runtime")


@dataclass
class GpuRunner:
    """Answers `nvidia-smi --query-gpu` like a host with `rows` GPUs; None = not installed."""

    rows: str | None = "550.54.15, NVIDIA L4\n"
    fails_with: str = ""
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], *, input: bytes | None = None,
                 env: Mapping[str, str] | None = None, timeout: float | None = None) -> Result:
        self.calls.append(tuple(argv))
        if argv[0] == "timedatectl":
            return Result(tuple(argv), 0, "yes\n", "")
        if argv[0] == "nvidia-smi" and self.rows is not None:
            if self.fails_with:
                return Result(tuple(argv), 9, "", self.fails_with)
            return Result(tuple(argv), 0, self.rows, "")
        return Result(tuple(argv), 127, "", f"{argv[0]}: not found")


def _gpu_host(node: Node, runner: GpuRunner, daemon_json: dict[str, Any] | None) -> Host:
    node.write("/usr/bin/nvidia-container-runtime", "#!/bin/sh\n")
    if daemon_json is not None:
        node.write("/etc/docker/daemon.json", json.dumps(daemon_json))
    return Host(node.root, runner)


NVIDIA_DAEMON = {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}


def test_the_ca_bundle_is_found_at_debians_location_and_named(
        preflight: Run, pick: Pick) -> None:
    check = pick(preflight(network=False), "ca_bundle")
    assert (check.status, check.summary) == (
        "pass", "/etc/ssl/certs/ca-certificates.crt (copied for ECS Exec)")


def test_a_host_without_any_ca_bundle_fails_and_names_certs_file(
        preflight: Run, pick: Pick, node: Node) -> None:
    node.remove("/etc/ssl/certs/ca-certificates.crt")
    check = pick(preflight(network=False), "ca_bundle")
    assert check.status == "fail"
    assert "/etc/pki/tls/certs/ca-bundle.crt" in check.summary
    assert "certs_file" in check.fix and "ca-certificates" in check.fix


def test_a_certs_file_that_does_not_exist_fails_even_when_a_default_bundle_exists(
        preflight: Run, pick: Pick, make_config: Callable[..., Config]) -> None:
    report = preflight(make_config(certs_file="/opt/corp/ca.pem"), network=False)
    check = pick(report, "ca_bundle")
    assert (check.status, check.summary) == ("fail", "certs_file /opt/corp/ca.pem does not exist")
    assert "--certs-file" in check.fix
    assert not report.ok


def test_a_certs_file_with_no_pem_certificate_fails(
        preflight: Run, pick: Pick, node: Node, make_config: Callable[..., Config]) -> None:
    node.write("/opt/corp/ca.pem", "not a certificate\n")
    check = pick(preflight(make_config(certs_file="/opt/corp/ca.pem"), network=False),
                 "ca_bundle")
    assert (check.status, check.summary) == ("fail", "/opt/corp/ca.pem holds no PEM certificate")
    node.write("/opt/corp/ca.pem", PEM_BUNDLE)
    check = pick(preflight(make_config(certs_file="/opt/corp/ca.pem"), network=False),
                 "ca_bundle")
    assert check.status == "pass"


def test_gpu_checks_are_skipped_and_never_run_nvidia_smi_without_enable_gpu(
        preflight: Run, pick: Pick, node: Node) -> None:
    runner = GpuRunner()
    report = preflight(host=Host(node.root, runner), network=False)
    assert [pick(report, n).status for n in GPU_CHECKS] == ["skip"] * 3
    assert not [c for c in runner.calls if c[0] == "nvidia-smi"]


def test_a_gpu_host_with_driver_toolkit_and_docker_runtime_passes_with_the_driver_version(
        preflight: Run, pick: Pick, node: Node, make_config: Callable[..., Config]) -> None:
    runner = GpuRunner(rows="550.54.15, NVIDIA L4\n550.54.15, NVIDIA L4\n")
    host = _gpu_host(node, runner, NVIDIA_DAEMON)
    report = preflight(make_config(enable_gpu=True), host=host, network=False)
    assert [pick(report, n).status for n in GPU_CHECKS] == ["pass"] * 3
    assert pick(report, "gpu_driver").summary == (
        "NVIDIA driver 550.54.15, 2 GPU(s): NVIDIA L4, NVIDIA L4")
    assert pick(report, "gpu_container_runtime").summary == "/usr/bin/nvidia-container-runtime"
    assert ("nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader") \
        in runner.calls


def test_a_host_without_a_gpu_fails_each_gpu_check_and_names_each_fix(
        preflight: Run, pick: Pick, node: Node, make_config: Callable[..., Config]) -> None:
    runner = GpuRunner(rows=None)
    report = preflight(make_config(enable_gpu=True, docker_source="none"),
                       host=Host(node.root, runner), network=False)
    driver, toolkit, docker = (pick(report, n) for n in GPU_CHECKS)
    assert (driver.status, driver.summary) == (
        "fail", "nvidia-smi is not installed (no NVIDIA driver)")
    assert "NVIDIA driver" in driver.fix and "enable_gpu = false" in driver.fix
    assert toolkit.status == "fail" and "nvidia-container-toolkit" in toolkit.fix
    assert docker.status == "fail" and "nvidia-ctk runtime configure --runtime=docker" \
        in docker.fix
    assert not report.ok


def test_a_driver_that_is_not_loaded_fails_with_nvidia_smis_own_words(
        preflight: Run, pick: Pick, node: Node, make_config: Callable[..., Config]) -> None:
    words = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
             "Make sure that the latest NVIDIA driver is installed and running.")
    host = _gpu_host(node, GpuRunner(fails_with=words), NVIDIA_DAEMON)
    check = pick(preflight(make_config(enable_gpu=True), host=host, network=False),
                 "gpu_driver")
    assert (check.status, check.summary) == ("fail", f"nvidia-smi failed: {words}")


def test_a_driver_that_lists_no_gpu_fails(
        preflight: Run, pick: Pick, node: Node, make_config: Callable[..., Config]) -> None:
    host = _gpu_host(node, GpuRunner(rows="\n"), NVIDIA_DAEMON)
    check = pick(preflight(make_config(enable_gpu=True), host=host, network=False),
                 "gpu_driver")
    assert (check.status, check.summary) == ("fail", "nvidia-smi lists no GPU")


def test_docker_without_the_nvidia_runtime_warns_when_install_manages_docker(
        preflight: Run, pick: Pick, node: Node, make_config: Callable[..., Config]) -> None:
    host = _gpu_host(node, GpuRunner(), {"log-driver": "journald"})
    check = pick(preflight(make_config(enable_gpu=True), host=host, network=False),
                 "gpu_docker_runtime")
    assert check.status == "warn" and "(install adds it)" in check.summary
    check = pick(preflight(make_config(enable_gpu=True, docker_source="none"), host=host,
                           network=False), "gpu_docker_runtime")
    assert check.status == "fail"


def test_an_unreadable_daemon_json_fails_and_names_the_file(
        preflight: Run, pick: Pick, node: Node, make_config: Callable[..., Config]) -> None:
    host = _gpu_host(node, GpuRunner(), None)
    node.write("/etc/docker/daemon.json", "{runtimes: nvidia")
    check = pick(preflight(make_config(enable_gpu=True), host=host, network=False),
                 "gpu_docker_runtime")
    assert check.status == "fail" and "/etc/docker/daemon.json is not valid JSON" \
        in check.summary
    assert "fix the JSON in /etc/docker/daemon.json" in check.fix
