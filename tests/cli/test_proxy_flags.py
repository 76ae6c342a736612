"""A proxy password is refused on our command line, as an activation code is; agent.toml and
the environment carry it instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anywhere_agent.config import load_config
from anywhere_agent.errors import ExitCode, UsageError
from anywhere_agent.node.argv import refuse_proxy_credentials

PASSWORD = "pr0xyPassw0rd"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANYWHERE_"))}
    return subprocess.run([sys.executable, "-m", "anywhere_agent", *args], capture_output=True,
                          text=True, env={**base, **(env or {})}, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("flag", "where"), [("--http-proxy", "ANYWHERE_AGENT_HTTP_PROXY"),
                                             ("--https-proxy", "ANYWHERE_AGENT_HTTPS_PROXY")])
def test_install_refuses_a_proxy_password_on_its_command_line(tmp_path: Path, flag: str,
                                                              where: str) -> None:
    res = cli("install", "--root", str(tmp_path), "--region", "us-east-1", "--dry-run",
              flag, f"http://alice:{PASSWORD}@proxy.corp:3128")
    assert res.returncode == ExitCode.USAGE
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert PASSWORD not in res.stdout + res.stderr
    assert f"{flag} http://alice:***@proxy.corp:3128 carries proxy credentials" in res.stderr
    assert "/etc/anywhere-agent/agent.toml" in res.stderr and where in res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_a_proxy_without_credentials_is_still_a_flag(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, {}, {"proxy.http": "http://proxy.corp:3128"})
    assert cfg.proxy.http == "http://proxy.corp:3128"


def test_the_environment_and_agent_toml_carry_a_proxy_password(tmp_path: Path) -> None:
    url = f"http://alice:{PASSWORD}@proxy.corp:3128"
    assert load_config(tmp_path, {"ANYWHERE_AGENT_HTTPS_PROXY": url}).proxy.https == url
    conf = tmp_path / "etc/anywhere-agent/agent.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text(f'[proxy]\nhttp = "{url}"\n')
    assert load_config(tmp_path, {}).proxy.http == url
    with pytest.raises(UsageError):
        refuse_proxy_credentials({"proxy.http": "http://token@proxy.corp:3128"})
    refuse_proxy_credentials({"proxy.http": "http://proxy.corp:3128"})


def test_install_dry_run_takes_the_password_from_the_environment_and_masks_it(
        tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    # ECS Exec's CA bundle, which install copies from the host's known locations.
    (tmp_path / "etc/ssl/certs").mkdir(parents=True)
    (tmp_path / "etc/ssl/certs/ca-certificates.crt").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    res = cli("install", "--root", str(tmp_path), "--region", "us-east-1", "--dry-run", "--json",
              env={"ANYWHERE_AGENT_HTTP_PROXY": f"http://alice:{PASSWORD}@proxy.corp:3128"})
    assert res.returncode == 0, res.stderr
    assert PASSWORD not in res.stdout + res.stderr
    assert "alice:***@proxy.corp:3128" in json.dumps(json.loads(res.stdout))
