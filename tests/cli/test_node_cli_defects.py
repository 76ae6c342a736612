"""Issue 16 through the node CLI as an operator runs it: closed stdin, a readable code file, a
BOM in agent.toml, masked units and a proxy password in an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from anywhere_agent.errors import ExitCode

CODE = "Sup3rSecretActivationCode"
ACT = "0c9a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"
DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def cli(*args: str, stdin: str | None = "",
        close_stdin: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANYWHERE_"))}
    argv = [sys.executable, "-m", "anywhere_agent", *args]
    if close_stdin:
        # What `anywhere-agent ... <&-` does in a shell: no file descriptor 0 at all.
        argv = ["bash", "-c", 'exec "$@" <&-', "bash", *argv]
        stdin = None
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env,
                          timeout=60, check=False,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def test_closed_standard_input_with_code_file_dash_is_one_line_and_exit_5(tmp_path: Path) -> None:
    res = cli("install", "--root", str(tmp_path), "--region", "us-east-1",
              "--activation-id", ACT, "--activation-code-file", "-", close_stdin=True)
    assert res.returncode == ExitCode.ACTIVATION, res.stderr
    assert "Traceback" not in res.stderr and "AttributeError" not in res.stderr
    assert "standard input is closed" in res.stderr and res.stderr.count("\n") == 1


def test_a_code_file_readable_by_others_is_warned_about_with_the_chmod(tmp_path: Path) -> None:
    code_file = tmp_path / "code"
    code_file.write_text(CODE + "\n")
    code_file.chmod(0o644)
    # --dry-run stops before anything acts; the warning comes from reading the file.
    res = cli("install", "--root", str(tmp_path / "root"), "--region", "us-east-1",
              "--activation-id", ACT, "--activation-code-file", str(code_file),
              "--dry-run")
    assert "readable by other users (mode 0644)" in res.stderr
    assert f"chmod 600 {code_file}" in res.stderr and CODE not in res.stderr + res.stdout
    code_file.chmod(0o600)
    res = cli("install", "--root", str(tmp_path / "root"), "--region", "us-east-1",
              "--activation-id", ACT, "--activation-code-file", str(code_file),
              "--dry-run")
    assert "readable by other users" not in res.stderr


def test_a_byte_order_mark_in_agent_toml_is_named_with_its_fix(tmp_path: Path) -> None:
    conf = tmp_path / "etc/anywhere-agent/agent.toml"
    conf.parent.mkdir(parents=True)
    conf.write_bytes(b'\xef\xbb\xbfregion = "us-east-1"\n')
    res = cli("status", "--root", str(tmp_path))
    assert res.returncode == ExitCode.CONFIG
    assert "byte order mark (BOM)" in res.stderr and "without BOM" in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1


def test_a_proxy_password_never_shows_in_an_error(tmp_path: Path) -> None:
    conf = tmp_path / "etc/anywhere-agent/agent.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('[proxy]\nhttp = "http://alice:pr0xyPassw0rd@proxy corp:3128"\n')
    res = cli("install", "--root", str(tmp_path), "--region", "us-east-1", "--json")
    assert res.returncode == ExitCode.CONFIG
    assert "pr0xyPassw0rd" not in res.stdout + res.stderr
    assert "alice:***@" in json.loads(res.stdout)["message"]


def test_preflight_fails_on_a_masked_ecs_unit_with_the_unmask(tmp_path: Path) -> None:
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/ecs.service").symlink_to("/dev/null")
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    (tmp_path / "run/systemd/system/docker.service").write_text("")
    (tmp_path / "etc/os-release").write_text(DEBIAN)
    res = cli("preflight", "--root", str(tmp_path), "--region", "us-east-1", "--no-network",
              "--json")
    assert res.returncode == ExitCode.PREFLIGHT
    masked = next(c for c in json.loads(res.stdout)["checks"] if c["name"] == "masked_units")
    assert masked["status"] == "fail"
    assert masked["fix"] == "systemctl unmask docker.service ecs.service"
