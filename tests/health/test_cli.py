"""`anywhere-agent health`: UNKNOWN when the daemon's state is missing or stale, fast imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anywhere_agent.cli.health import main
from anywhere_agent.health.model import Check, HostHealth, Status
from anywhere_agent.health.state import state_bytes

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, **health: object) -> str:
    lines = ["cluster = \"lab\"", "[health]",
             f"state_file = \"{tmp_path / 'health.json'}\""]
    lines += [f"{k} = {json.dumps(v)}" for k, v in health.items()]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def write_state(tmp_path: Path, status: Status, age: float) -> None:
    health = HostHealth.build(
        [Check("unit_ecs", status, "ecs is running" if status is Status.OK else "ecs failed",
               value=0.0)], time.time() - age, cluster="lab",
        instance_id="mi-0123456789abcdef0")
    (tmp_path / "health.json").write_bytes(state_bytes(health))


@pytest.mark.parametrize("fmt", ["nagios", "json", "prometheus"])
def test_missing_state_is_unknown_with_the_reason_in_every_format(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    assert main(["--format", fmt, "--config", write_config(tmp_path)]) == 3
    out = capsys.readouterr().out
    if fmt == "nagios":
        assert out.startswith("ANYWHERE-AGENT UNKNOWN - no supervisor state at ")
        assert out.count("\n") == 1
    elif fmt == "json":
        data = json.loads(out)
        assert data["status"] == "UNKNOWN" and "not running" in data["summary"]
        assert data["extra"]["fix"].startswith("start it: systemctl start anywhere-agent")
    else:
        assert "anywhere_agent_health_status 3" in out.splitlines()


def test_stale_state_is_unknown_and_says_how_old(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_state(tmp_path, Status.OK, age=300)
    assert main(["--config", write_config(tmp_path, stale_after_seconds=90)]) == 3
    out = capsys.readouterr().out
    assert out.startswith("ANYWHERE-AGENT UNKNOWN - supervisor state is 300s old (limit 90s)")
    assert "state_age=300" in out


@pytest.mark.parametrize("status", [Status.OK, Status.WARNING, Status.CRITICAL])
def test_fresh_state_reports_its_status_as_the_exit_code(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], status: Status) -> None:
    write_state(tmp_path, status, age=5)
    assert main(["--config", write_config(tmp_path)]) == int(status)
    out = capsys.readouterr().out
    assert out.startswith(f"ANYWHERE-AGENT {status.name} - ")
    assert "unit_ecs=0" in out and "state_age=5" in out


def test_corrupt_state_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "health.json").write_text("{not json")
    assert main(["--config", write_config(tmp_path)]) == 3
    assert "is not valid JSON" in capsys.readouterr().out


def test_invalid_config_is_unknown_with_its_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("no_such_key = 1\n")
    assert main(["--format", "json", "--config", str(bad)]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["summary"].startswith("configuration: ")
    assert data["extra"]["fix"]


def test_bad_usage_is_unknown_not_critical(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--format", "xml"]) == 3


def test_the_health_command_never_imports_boto3_botocore_typer_or_psutil(
        tmp_path: Path) -> None:
    write_state(tmp_path, Status.OK, age=1)
    config = write_config(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "anywhere_agent", "health", "--config",
         config], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ANYWHERE-AGENT OK - all 1 checks OK")
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "anywhere_agent.cli.health" in imported  # the check can see our own imports
    roots = {name.split(".")[0] for name in imported}
    assert roots.isdisjoint({"boto3", "botocore", "typer", "psutil", "tenacity", "requests",
                             "click", "rich"}), sorted(roots)
