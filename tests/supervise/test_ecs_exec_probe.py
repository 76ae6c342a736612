"""ECS Exec readiness as health and status see it: the CA bundle and SSM binaries the ECS agent
bind-mounts, with the modes AWS's install script gives them."""

from __future__ import annotations

from pathlib import Path

from anywhere_agent.health.model import Status
from anywhere_agent.host import ecs_exec
from anywhere_agent.host.gateway import Host
from anywhere_agent.node.status import render_text
from anywhere_agent.supervise.probes import EcsExecProbe

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _put(root: Path, node_path: str, data: bytes, mode: int) -> None:
    path = root / node_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def _ready(root: Path, version: str = "3.3.4108.0") -> None:
    _put(root, ecs_exec.CA_BUNDLE, PEM, 0o400)
    (root / ecs_exec.CONFIG_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for name in ecs_exec.BINARIES:
        _put(root, f"{ecs_exec.BIN_DIR}/{version}/{name}", b"\x7fELF", 0o755)


def test_a_host_with_bundle_and_binaries_is_ready_with_the_version(tmp_path: Path) -> None:
    _ready(tmp_path)
    check = EcsExecProbe(Host(tmp_path), 60)().checks[0]
    assert (check.status, check.reason) == (Status.OK, "ready")
    assert check.summary == "ECS Exec ready (SSM binaries 3.3.4108.0, CA bundle 0400)"


def test_a_host_without_ecs_exec_files_warns_and_names_install(tmp_path: Path) -> None:
    check = EcsExecProbe(Host(tmp_path), 60)().checks[0]
    assert (check.status, check.reason) == (Status.WARNING, "not_ready")
    assert f"{ecs_exec.CA_BUNDLE} is missing" in check.summary
    assert "no SSM agent binaries under" in check.summary
    assert "anywhere-agent install" in check.fix


def test_a_readable_bundle_or_a_missing_worker_is_not_ready(tmp_path: Path) -> None:
    _ready(tmp_path)
    (tmp_path / ecs_exec.CA_BUNDLE.lstrip("/")).chmod(0o644)
    (tmp_path / f"{ecs_exec.BIN_DIR}/3.3.4108.0/ssm-session-worker".lstrip("/")).unlink()
    ready = ecs_exec.readiness(Host(tmp_path))
    assert not ready.ready and ready.version is None
    assert ready.problems == (f"{ecs_exec.CA_BUNDLE} has mode 0644, not 0400",
                              f"no version under {ecs_exec.BIN_DIR} has all of "
                              "amazon-ssm-agent, ssm-agent-worker, ssm-session-worker executable")


def test_the_newest_complete_version_counts_as_the_agent_picks_it(tmp_path: Path) -> None:
    _ready(tmp_path, "3.3.4108.0")
    _ready(tmp_path, "3.10.1.0")  # numerically newer, although it sorts first as text
    (tmp_path / ecs_exec.BIN_DIR.lstrip("/") / "not-a-version").mkdir()
    assert ecs_exec.readiness(Host(tmp_path)).version == "3.10.1.0"
    (tmp_path / f"{ecs_exec.BIN_DIR}/3.10.1.0/ssm-agent-worker".lstrip("/")).unlink()
    assert ecs_exec.readiness(Host(tmp_path)).version == "3.3.4108.0"


def test_status_text_says_whether_ecs_exec_will_work() -> None:
    base = {"managed_instance_id": None, "region": None, "cluster": "c",
            "container_instance_arn": None, "introspection": "not answering", "versions": {},
            "services": {}, "credentials": {"present": False}, "previous_identities": [],
            "last_install": {}}
    ready = {**base, "ecs_exec": {"ready": True, "version": "3.3.4108.0", "problems": []}}
    assert "ecs exec           ready (SSM binaries 3.3.4108.0)" in render_text(ready)
    not_ready = {**base, "ecs_exec": {"ready": False, "version": None,
                                      "problems": ["x is missing"]}}
    assert "ecs exec           not ready: x is missing" in render_text(not_ready)
