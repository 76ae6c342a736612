"""`anywhere-agent supervise` starts without typer (the daemon's memory and start-up budget)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from anywhere_agent.cli.main import app
from anywhere_agent.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"typer", "click", "pydantic", "rich", "boto3", "botocore"}


def test_the_supervise_command_never_imports_typer_click_or_pydantic(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('regoin = "typo"\n')  # fails after the config is loaded, touching nothing
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "anywhere_agent", "supervise", "--once",
         "--config", str(config)], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == ExitCode.CONFIG, proc.stderr[-2000:]
    assert "regoin is not a known key" in proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert {"anywhere_agent.cli.supervise", "anywhere_agent.config"} <= imported
    assert {name.split(".")[0] for name in imported}.isdisjoint(HEAVY)


def test_the_typer_door_runs_the_same_supervisor(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('regoin = "typo"\n')
    result = CliRunner().invoke(app, ["supervise", "--once", "--config", str(config)])
    assert result.exit_code == ExitCode.CONFIG
    assert "regoin is not a known key" in result.stderr
