"""Every command that calls AWS, run against an endpoint nobody listens on, as an operator would.

Each must exit 7 (network) with one line that names the endpoint and the fix, and no
traceback; node commands must leave the host as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anywhere_agent.errors import ExitCode

UNREACHABLE = "http://127.0.0.1:9"
MI = "mi-0123456789abcdef0"
ARN = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/0123456789abcdef"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANYWHERE_"))}
    env.update({
        "AWS_ENDPOINT_URL": UNREACHABLE, "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDUNREACHABLE", "AWS_SECRET_ACCESS_KEY": "unreachable-secret",
        "AWS_CONFIG_FILE": str(cwd / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "no-credentials"),
        # Fewer attempts only shorten botocore's backoff; the error that ends them is the same.
        "AWS_MAX_ATTEMPTS": "2",
    })
    return subprocess.run([sys.executable, "-m", "anywhere_agent", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def assert_one_line_network_error(res: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert res.returncode == ExitCode.NETWORK, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "cannot reach http://127.0.0.1:9" in lines[0]
    assert "; fix: check network, proxy and endpoint settings" in lines[0]


REGISTRAR = {
    "ensure": ["ensure", "--cluster", "prod"],
    "activate": ["activate", "--count", "2", "--output", "codes.json"],
    "revoke_by_id": ["revoke", "--activation-id", "0c9a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"],
    "revoke_by_rollout": ["revoke", "--rollout", "r-1"],
    "fleet": ["fleet"],
    "inventory": ["inventory"],
    "deregister": ["deregister", "mi-0123456789abcdef0"],
    "prune_dry_run": ["prune", "--dry-run"],
    "prune_yes": ["prune", "--yes"],
    "wait": ["wait", "--hosts", "web-1", "--timeout", "5s", "--interval", "1s"],
    "drain": ["drain", "--hosts", "web-1", "--timeout", "5s", "--interval", "1s"],
    "undrain": ["undrain", "--hosts", "web-1"],
}


@pytest.mark.parametrize("command", sorted(REGISTRAR))
def test_registrar_command_against_an_unreachable_endpoint_exits_7_with_one_line(
        command: str, tmp_path: Path) -> None:
    res = run("registrar", *REGISTRAR[command], cwd=tmp_path)
    assert_one_line_network_error(res)
    assert not (tmp_path / "codes.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".codes.json")]


@pytest.mark.parametrize("command", ["ensure", "activate"])
def test_registrar_json_error_against_an_unreachable_endpoint_is_one_object(
        command: str, tmp_path: Path) -> None:
    res = run("registrar", *REGISTRAR[command], "--json", cwd=tmp_path)
    assert res.returncode == ExitCode.NETWORK and "Traceback" not in res.stderr
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 7 and doc["error"] == "NetworkError"
    assert "127.0.0.1:9" in doc["message"] and doc["fix"]


def joined_node(tmp_path: Path) -> Path:
    """A node root that install left registered and joined (what uninstall reads)."""
    root = tmp_path / "root"
    files = {
        "etc/os-release": 'ID=debian\nVERSION_ID="12"\n',
        "etc/anywhere-agent/agent.toml": 'region = "us-east-1"\ncluster = "prod"\n',
        "var/lib/amazon/ssm/registration": json.dumps(
            {"ManagedInstanceID": MI, "Region": "us-east-1"}),
        "root/.aws/credentials": "[default]\naws_access_key_id = ASIAHOST\n"
                                 "aws_secret_access_key = host-secret\naws_session_token = tok\n",
        "var/lib/anywhere-agent/state.json": json.dumps(
            {"identity": {"managed_instance_id": MI, "container_instance_arn": ARN,
                          "cluster": "prod", "region": "us-east-1"}}),
        "etc/ecs/ecs.config": "ECS_CLUSTER=prod\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Every file and its bytes, less the flock file every run leaves (it holds only a PID)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "install.lock"}


def test_uninstall_against_an_unreachable_endpoint_exits_7_and_leaves_the_host(
        tmp_path: Path) -> None:
    root = joined_node(tmp_path)
    before = tree(root)
    # --force: no local ECS agent answers here, so this is not about running tasks.
    res = run("uninstall", "--root", str(root), "--force", cwd=tmp_path)
    assert_one_line_network_error(res)
    assert "--force-local" in res.stderr and ARN in res.stderr
    assert tree(root) == before


def test_preflight_against_an_unreachable_endpoint_names_each_endpoint_and_its_fix(
        tmp_path: Path) -> None:
    # preflight's contract is exit 4 with one line per failed check; no AWS API call is made.
    root = joined_node(tmp_path)
    res = run("preflight", "--root", str(root), "--no-network", cwd=tmp_path)
    assert "Traceback" not in res.stderr + res.stdout
    res = run("preflight", "--root", str(root), "--json", cwd=tmp_path)
    assert res.returncode == ExitCode.PREFLIGHT and "Traceback" not in res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    for service in ("ssm", "ecs"):
        check = checks[f"endpoint_{service}"]
        assert check["status"] == "fail" and "127.0.0.1:9" in check["summary"] and check["fix"]


def test_status_needs_no_endpoint(tmp_path: Path) -> None:
    root = joined_node(tmp_path)
    res = run("status", "--root", str(root), "--json", cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert json.loads(res.stdout)["managed_instance_id"] == MI
