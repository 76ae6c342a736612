"""On a joined lab host: an ACS outage (`lab fault acs-outage`) turns health WARNING from the ECS
agent's own log, then OK when ACS is back; a support bundle holds each planted secret zero
times (lab clock at 20x, so the agent's reconnect backoff stays short)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

NAME = "aasupp"
CLUSTER = "support"
HOST = "n1"
SCALE = 20.0
WARN_SECONDS = 10
PROXY_PASSWORD = "s3cretProxyPw"
PROXY = f"http://carol:{PROXY_PASSWORD}@127.0.0.1:9"  # refused at once; no_proxy reaches the lab
PLANTED_KEY_ID = "AKIAPLANTEDKEY000001"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name=NAME, time_scale=SCALE).running(1) as lab:
        rollout.stage(lab, [HOST])
        config = rollout.node_config(lab.control_plane_url(), lab.region, CLUSTER)
        # node_config ends in [supervise]: an outage is a WARNING after WARN_SECONDS here.
        config += f"acs_warn_seconds = {WARN_SECONDS}\nacs_crit_seconds = 3600\n"
        rollout.write_config(lab, HOST, config)
        yield lab


@pytest.fixture(scope="module")
def joined(lab: Lab) -> dict[str, Any]:
    activation = rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 1)
    code, result, err = rollout.install(lab, HOST, activation)
    assert code == 0, (result, err)
    return {"result": result, "code": activation.code.reveal()}


def health(lab: Lab) -> tuple[int, dict[str, Any]]:
    proc = lab.exec(HOST, ["anywhere-agent", "health", "--format", "json"], check=False)
    return proc.returncode, json.loads(proc.stdout.decode() or "{}")


def acs_check(doc: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in doc.get("checks", []) if c["name"] == "ecs_acs_session"), {})


def within(seconds: float, check: Callable[[], bool], what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(1)
    return time.monotonic() - start


def lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(Path(sys.executable).parent / "anywhere-agent"), "lab", *args, "--name", NAME]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_an_acs_outage_turns_health_warning_with_the_fix_then_ok_when_acs_returns(
        lab: Lab, joined: dict[str, Any]) -> None:
    within(90, lambda: health(lab)[0] == 0 and acs_check(health(lab)[1]).get("reason")
           == "connected", "health OK with the ACS session connected")
    cut = lab_cli("fault", "acs-outage", "--host", HOST, "--json")
    assert cut.returncode == 0, cut.stderr
    try:
        took = within(60, lambda: health(lab)[0] == 1, "health WARNING")
        code, doc = health(lab)
        check = acs_check(doc)
        assert (code, doc["status"], check["status"]) == (1, "WARNING", "WARNING"), doc
        # The lab refuses the upgrade with a ServerException: the agent's words point at the
        # endpoint side.
        assert check["reason"] == "endpoint" and "ServerException" in check["summary"], check
        assert "preflight" in check["fix"]
        assert took >= WARN_SECONDS * 0.5  # not before the threshold (the probe runs every 5 s)
        log = lab.exec(HOST, ["cat", "/var/log/ecs/ecs-agent.log"]).stdout.decode()
        assert 'msg="Failed to connect to ACS"' in log
    finally:
        back = lab_cli("fault", "acs-outage", "--off", "--host", HOST, "--json")
        assert back.returncode == 0, back.stderr
    within(90, lambda: health(lab)[0] == 0, "health OK again")
    assert acs_check(health(lab)[1])["reason"] == "connected"


def host_secrets(lab: Lab, code: str, plant: bool = True) -> dict[str, list[str]]:
    """The secrets this joined host really holds, plus ones planted where they leak to."""
    creds = lab.exec(HOST, ["cat", "/root/.aws/credentials"]).stdout.decode()
    values = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in
                                                     creds.splitlines() if "=" in line)}
    vault = json.loads(lab.exec(HOST, ["cat", "/var/lib/amazon/ssm/Vault/Store/"
                                              "RegistrationKey"]).stdout)
    key = vault["privateKey"]
    assert len(key) > 500
    pem = "\n".join(["-----BEGIN RSA PRIVATE KEY-----"]
                    + [key[i:i + 64] for i in range(0, len(key), 64)]
                    + ["-----END RSA PRIVATE KEY-----"])
    access = values["aws_access_key_id"].strip()
    secret = values["aws_secret_access_key"].strip()
    token = values["aws_session_token"].strip()
    planted = (f"2026-11-30 05:00:00 DEBUG [Registrar] amazon-ssm-agent -register -code {code} "
               f"-id x -region {lab.region}\n"
               f'2026-11-30 05:00:01 DEBUG body {{"ActivationCode":"{code}"}}\n'
               f"2026-11-30 05:00:02 DEBUG creds {access} {secret} {token}\n"
               f"2026-11-30 05:00:03 DEBUG key\n{pem}\n"
               f"2026-11-30 05:00:04 DEBUG another key {PLANTED_KEY_ID}\n")
    if plant:
        lab.exec(HOST, ["sh", "-c", "cat >> /var/log/amazon/ssm/amazon-ssm-agent.log"],
                 input=planted.encode())
    return {"activation code": [code], "access key": [access, PLANTED_KEY_ID],
            "secret key": [secret], "session token": [token],
            "proxy password": [PROXY_PASSWORD],
            "rsa private key": [key] + [key[i:i + 64] for i in range(0, len(key) - 64, 64)]}


def test_a_support_bundle_from_a_joined_host_holds_each_planted_secret_zero_times(
        lab: Lab, joined: dict[str, Any]) -> None:
    lab_host = urlsplit(lab.control_plane_url()).hostname or ""
    code, _, err = rollout.install(lab, HOST, None, extra=(
        "--http-proxy", PROXY, "--https-proxy", PROXY, "--no-proxy", lab_host))
    assert code == 0, err
    secrets = host_secrets(lab, joined["code"])
    proc = lab.ssh(HOST, ["anywhere-agent", "support-bundle", "--output", "/var/tmp", "--json"],
                   check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode() + proc.stderr.decode()
    result = json.loads(proc.stdout)
    path = result["path"]
    assert path.startswith("/var/tmp/anywhere-agent-support-") and path.endswith(".tar.gz")
    assert lab.exec(HOST, ["stat", "-c", "%a", path]).stdout.decode().strip() == "600"
    data = lab.exec(HOST, ["cat", path]).stdout
    assert len(data) == result["bytes"]
    files: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            fh = tar.extractfile(member)
            assert fh is not None and member.mode == 0o600
            files[member.name.split("/", 1)[1]] = fh.read().decode()
    text = "\n".join(files.values()) + out
    found = {kind: [v[:6] for v in values if v in text] for kind, values in secrets.items()}
    assert found == {kind: [] for kind in secrets}
    # Not hidden by base64 either (the archive's bytes are gzip; its text was scanned above).
    assert base64.b64encode(joined["code"].encode()).decode() not in text
    # And it is useful: the reports, the agents' own files and logs, the host's state.
    for name in ("reports/preflight.json", "reports/status.json", "reports/health.json",
                 "state/state.json", "config/agent.toml", "config/ecs/etc-ecs.config",
                 "config/ssm/amazon-ssm-agent.json", "config/systemd/ecs.service.d/"
                 "http-proxy.conf", "logs/ecs-agent.log", "logs/amazon-ssm-agent.log",
                 "journal/ecs.txt", "commands/docker-info.txt", "commands/df.txt",
                 "host/meminfo", "manifest.json"):
        assert name in files, (name, sorted(files))
    status = json.loads(files["reports/status.json"])
    assert status["managed_instance_id"] == joined["result"]["managed_instance_id"]
    assert "Connected to ACS endpoint" in files["logs/ecs-agent.log"]
    assert "ecs_acs_session" in files["reports/health.json"]
    assert "(exit 0)" in files["commands/docker-info.txt"]
    assert "carol:***@127.0.0.1:9" in text  # the proxy stays visible, its password not
    manifest = json.loads(files["manifest.json"])
    assert manifest["redactions"] > 0 and not manifest["errors"], manifest["errors"]
    assert sum(e["bytes"] for e in manifest["entries"]) <= manifest["bound_bytes"]


def test_support_yml_brings_the_bundle_to_the_controller_and_shows_no_secret(
        lab: Lab, joined: dict[str, Any], tmp_path: Path) -> None:
    from tests.ansible.conftest import run_playbook

    inventory = tmp_path / "hosts.ini"
    inventory.write_text(lab.inventory())
    binary = lab.exec(HOST, ["sh", "-c", "command -v anywhere-agent"]).stdout.decode().strip()
    dest = tmp_path / "case-1234"
    run = run_playbook("support.yml", inventory, {
        "support_hosts": lab.name, "support_dest": str(dest),
        "ecs_anywhere_node_bin_link": binary}, "-v", timeout=600)
    assert run.rc == 0, run.output
    fetched = dest / f"{HOST}.tar.gz"
    assert fetched.stat().st_mode & 0o777 == 0o600
    with tarfile.open(fetched) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers()}
        text = "\n".join(fh.read().decode() for m in tar.getmembers()
                         if (fh := tar.extractfile(m)) is not None)
    assert {"reports/status.json", "reports/health.json", "manifest.json"} <= names
    assert lab.exec(HOST, ["test", "-e", f"/var/tmp/anywhere-agent-support-{HOST}.tar.gz"],
                    check=False).returncode == 1  # removed from the node
    secrets = host_secrets(lab, joined["code"], plant=False)
    found = {kind: [v[:6] for v in values if v in run.output + text]
             for kind, values in secrets.items()}
    assert found == {kind: [] for kind in secrets}
    assert f"{dest}/{HOST}.tar.gz:" in run.output and "secrets redacted" in run.output
