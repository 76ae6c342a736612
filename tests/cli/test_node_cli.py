"""The node CLI as a user runs it: one line, a documented exit code, no traceback, no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from anywhere_agent.errors import ExitCode

CODE = "Sup3rSecretActivationCode"


def cli(*args: str, env: dict[str, str] | None = None,
        stdin: str = "") -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANYWHERE_"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "anywhere_agent", *args], input=stdin,
                          capture_output=True, text=True, env=full, timeout=60, check=False)


def test_activation_code_on_argv_is_refused_with_exit_2(tmp_path: Path) -> None:
    res = cli("install", "--root", str(tmp_path), "--region", "us-east-1",
              "--activation-code", CODE)
    assert res.returncode == ExitCode.USAGE
    assert "must not be given on the command line" in res.stderr
    assert "Traceback" not in res.stderr and CODE not in res.stderr + res.stdout
    assert not any(tmp_path.iterdir())


def test_malformed_agent_toml_exits_3_with_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "etc/anywhere-agent/agent.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('region = "us-east-1"\ndocker_source = 7\n')
    res = cli("install", "--root", str(tmp_path))
    assert res.returncode == ExitCode.CONFIG
    assert res.stderr.count("\n") == 1 and "docker_source" in res.stderr


def test_empty_activation_code_exits_5(tmp_path: Path) -> None:
    res = cli("install", "--root", str(tmp_path), "--region", "us-east-1",
              "--activation-code-file", "-", stdin="\n")
    assert res.returncode == ExitCode.ACTIVATION
    assert "empty" in res.stderr and "Traceback" not in res.stderr


def test_missing_region_names_the_three_ways_to_set_it(tmp_path: Path) -> None:
    res = cli("install", "--root", str(tmp_path), "--json")
    assert res.returncode == ExitCode.CONFIG
    assert '"fix"' in res.stdout and "ANYWHERE_AGENT_REGION" in res.stdout


def test_unknown_flag_is_a_usage_error() -> None:
    res = cli("install", "--regoin", "us-east-1")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_exit_codes_are_listed_by_the_cli() -> None:
    res = cli("exit-codes", "--json")
    assert res.returncode == 0
    assert '"name": "activation"' in res.stdout
