"""The ECS agent double offers ecs.capability.execute-command only when ECS Exec's files are
there, by the real agent's rule (agent/app/agent_capability.go appendExecCapabilities)."""

from __future__ import annotations

from pathlib import Path

from anywhere_agent.lab.doubles.ecs_agent import EXEC_BINARIES, exec_deps_present


def _deps(root: Path, version: str = "3.3.4108.0") -> None:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "certs").mkdir(exist_ok=True)
    (root / "certs/tls-ca-bundle.pem").write_text("pem")
    (root / "bin" / version).mkdir(parents=True, exist_ok=True)
    for name in EXEC_BINARIES:
        (root / "bin" / version / name).write_text("x")


def test_complete_deps_offer_the_capability(tmp_path: Path) -> None:
    _deps(tmp_path)
    assert exec_deps_present(str(tmp_path))


def test_no_deps_dir_offers_nothing(tmp_path: Path) -> None:
    assert not exec_deps_present(str(tmp_path / "absent"))


def test_each_missing_part_withdraws_the_capability(tmp_path: Path) -> None:
    for gone in ("certs/tls-ca-bundle.pem", "bin/3.3.4108.0/ssm-session-worker", "config"):
        root = tmp_path / gone.replace("/", "_")
        _deps(root)
        target = root / gone
        target.rmdir() if target.is_dir() else target.unlink()
        assert not exec_deps_present(str(root)), gone


def test_only_version_named_folders_count(tmp_path: Path) -> None:
    _deps(tmp_path, "latest")
    assert not exec_deps_present(str(tmp_path))
    _deps(tmp_path, "3.3.1802.0")
    assert exec_deps_present(str(tmp_path))
