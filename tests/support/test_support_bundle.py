"""The support bundle on a scripted node: what it holds, every planted secret zero times, the
size bound, and its errors as a user meets them."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from anywhere_agent.errors import ExitCode
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.install.apply import Progress, apply
from anywhere_agent.support.archive import build
from anywhere_agent.support.collect import (
    BOUND_BYTES,
    LOG_TAIL_BYTES,
    Collection,
    Entry,
    NodeFacts,
    bound,
)
from anywhere_agent.support.redact import MASK, Redactor

ACTIVATION_CODE = "Jx3bbVH+lfaXJ2aqIlRV"
ACCESS_KEY = "ASIAQWERTYUIOPASDFGH"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEFAKE//////////wEaCXVzLWVhc3QtMSJHMEUCIQDsessiontoken"
OTHER_ACCESS_KEY = "AKIAZXCVBNMASDFGHJKL"  # never on this host: only its shape gives it away
OTHER_SECRET_KEY = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA12"
PROXY_PASSWORD = "p@ss:w0rd-proxy"
PROXY_URL = f"http://alice:{urllib.parse.quote(PROXY_PASSWORD, safe='')}@proxy.corp:3128"
DOCKER_AUTH_PASSWORD = "dockerhubP4ssw0rd"
PRIVATE_KEY = base64.b64encode(bytes(range(256)) * 5).decode()  # stands in for PKCS#1 DER
MI = "mi-00000000000000001"


def pem(body: str) -> str:
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines)
            + "\n-----END RSA PRIVATE KEY-----")


SECRETS = {
    "activation code": [ACTIVATION_CODE],
    "access key": [ACCESS_KEY, OTHER_ACCESS_KEY],
    "secret key": [SECRET_KEY, OTHER_SECRET_KEY],
    "session token": [SESSION_TOKEN],
    "proxy password": [PROXY_PASSWORD, urllib.parse.quote(PROXY_PASSWORD, safe="")],
    "docker registry password": [DOCKER_AUTH_PASSWORD],
    # The key, and each 64-column line of it as PEM writes it.
    "rsa private key": [PRIVATE_KEY] + [PRIVATE_KEY[i:i + 64]
                                        for i in range(0, len(PRIVATE_KEY) - 64, 64)],
}


class Commands:
    """journalctl, docker, df, uname as they answer on a host whose logs hold secrets."""

    def __init__(self, system: Any) -> None:
        self.system = system

    def __call__(self, argv: Sequence[str], *, input: Optional[bytes] = None,
                 env: Optional[Mapping[str, str]] = None,
                 timeout: Optional[float] = None) -> Result:
        argv = tuple(argv)
        if argv[0] == "journalctl":
            unit = argv[2]
            return Result(argv, 0, (
                f"2026-11-30T05:00:00+0000 node {unit}[1]: started\n"
                f"2026-11-30T05:00:01+0000 node {unit}[1]: env AWS_SECRET_ACCESS_KEY={SECRET_KEY}"
                f" AWS_SESSION_TOKEN={SESSION_TOKEN}\n"
                f"2026-11-30T05:00:02+0000 node {unit}[1]: /usr/bin/amazon-ssm-agent -register "
                f"-code {ACTIVATION_CODE} -id 0c9a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b -region "
                "us-east-1 -y\n"))
        if argv[:2] == ("docker", "info"):
            return Result(argv, 0, f" Server Version: 20.10.24\n HTTP Proxy: {PROXY_URL}\n")
        if argv[0] in ("df", "uname"):
            return Result(argv, 0, f"{' '.join(argv)} output\n")
        if argv[0] == "systemctl" and argv[1] == "status":
            return Result(argv, 0, "● ecs.service - Amazon ECS\n   Active: active (running)\n")
        return self.system(argv, input=input, env=env, timeout=timeout)  # type: ignore[no-any-return]


def plant(root: Path) -> None:
    """Every kind of secret, where a real host keeps it and where it leaks to."""
    def write(path: str, text: str, mode: int = 0o600) -> None:
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)

    write("/proc/meminfo", "MemTotal:       24000000 kB\nMemAvailable:   12000000 kB\n", 0o444)
    write("/root/.aws/credentials", f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
          f"aws_secret_access_key = {SECRET_KEY}\naws_session_token = {SESSION_TOKEN}\n")
    write("/var/lib/amazon/ssm/Vault/Store/RegistrationKey", json.dumps(
        {"instanceID": MI, "region": "us-east-1", "privateKey": PRIVATE_KEY, "publicKey": "",
         "privateKeyType": "Rsa"}))
    write("/etc/anywhere-agent/agent.toml",
          f'region = "us-east-1"\ncluster = "prod"\n\n[proxy]\nhttps = "{PROXY_URL}"\n')
    with (root / "etc/ecs/ecs.config").open("a") as fh:
        fh.write('ECS_ENGINE_AUTH_TYPE=docker\nECS_ENGINE_AUTH_DATA={"https://index.docker.io/'
                 f'v1/":{{"username":"bob","password":"{DOCKER_AUTH_PASSWORD}","email":"b@x"}}}}\n')
    write("/var/log/amazon/ssm/amazon-ssm-agent.log", (
        "2026-11-30 05:00:00 INFO Agent starting\n"
        f'2026-11-30 05:00:01 DEBUG RegisterManagedInstance {{"ActivationCode": '
        f'"{ACTIVATION_CODE}", "PublicKey": "abc"}}\n'
        f"2026-11-30 05:00:02 DEBUG credentials {ACCESS_KEY} {SECRET_KEY} {SESSION_TOKEN}\n"
        f"2026-11-30 05:00:03 DEBUG key {PRIVATE_KEY}\n"
        f"2026-11-30 05:00:04 DEBUG someone pasted\n{pem(PRIVATE_KEY)}\n"
        f"2026-11-30 05:00:05 INFO proxy https_proxy={PROXY_URL}\n"), 0o644)
    write("/var/log/ecs/ecs-agent.log", (
        'level=info time=2026-11-30T05:00:00Z msg="Connected to ACS endpoint"\n'
        f'level=debug time=2026-11-30T05:00:01Z msg="value {ACTIVATION_CODE}"\n'
        f'level=debug time=2026-11-30T05:00:02Z msg="aws_access_key_id={OTHER_ACCESS_KEY}"\n'
        f"aws_secret_access_key = {OTHER_SECRET_KEY}\n"
        'level=debug time=2026-11-30T05:00:03Z msg="header" X-Amz-Security-Token: '
        f"{SESSION_TOKEN}\n"), 0o644)


def installed(node: Any) -> tuple[Any, Host]:
    system, make_ctx, _ = node
    # agent.toml is the place for a proxy password (the flags refuse one).
    conf = system.root / "etc/anywhere-agent/agent.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[proxy]\nhttp = "{PROXY_URL}"\nhttps = "{PROXY_URL}"\n')
    apply(make_ctx(), Progress(io.StringIO(), tty=False))
    plant(system.root)
    return system, Host(system.root, runner=Commands(system))


def facts() -> NodeFacts:
    return NodeFacts(env={"ANYWHERE_AGENT_ACTIVATION_CODE": ACTIVATION_CODE}, euid=0,
                     machine="x86_64")


def members(path: Path) -> dict[str, str]:
    with tarfile.open(path) as tar:
        out = {}
        for m in tar.getmembers():
            assert m.mode == 0o600, m.name
            fh = tar.extractfile(m)
            assert fh is not None
            out[m.name.split("/", 1)[1]] = fh.read().decode()
        return out


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    return 200, json.dumps({"Cluster": "prod", "ContainerInstanceArn": "arn:aws:ecs:us-east-1:1:"
                            "container-instance/prod/abc", "Version": "v1.105.1"}).encode()


def test_a_bundle_from_an_installed_node_holds_each_planted_secret_zero_times(
        node: Any) -> None:
    system, host = installed(node)
    result = build(host, facts(), "/var/tmp/case.tar.gz", http_get=http_get)
    path = system.root / "var/tmp/case.tar.gz"
    assert result.path == "/var/tmp/case.tar.gz" and path.stat().st_mode & 0o777 == 0o600
    files = members(path)
    text = "\n".join(files.values())
    if os.environ.get("SHOW_BUNDLE"):
        print(text)
    found = {kind: [v[:8] for v in values if v in text] for kind, values in SECRETS.items()}
    assert found == {kind: [] for kind in SECRETS}
    assert MASK in files["logs/amazon-ssm-agent.log"]
    assert MASK in files["journal/amazon-ssm-agent.txt"]
    # What support needs survives the redaction.
    for name in ("reports/preflight.json", "reports/status.json", "reports/health.json",
                 "state/state.json", "config/agent.toml", "config/ecs/etc-ecs.config",
                 "config/ecs/var-lib-ecs.config", "config/ssm/registration",
                 "config/systemd/ecs.service.d/http-proxy.conf", "commands/docker-info.txt",
                 "commands/systemctl-status.txt", "commands/df.txt", "journal/ecs.txt",
                 "logs/ecs-agent.log", "host/meminfo", "manifest.json"):
        assert name in files, name
    assert json.loads(files["reports/status.json"])["managed_instance_id"] == MI
    assert "ECS_CLUSTER=prod" in files["config/ecs/etc-ecs.config"]
    assert "proxy.corp:3128" in files["commands/docker-info.txt"]
    assert "Connected to ACS endpoint" in files["logs/ecs-agent.log"]
    assert not any("credentials" in n or "Vault" in n for n in files)
    manifest = json.loads(files["manifest.json"])
    assert manifest["bound_bytes"] == BOUND_BYTES and manifest["redactions"] >= 10
    assert {e["name"] for e in manifest["entries"]} == set(files) - {"manifest.json"}


def test_a_huge_log_is_cut_to_its_tail_and_the_archive_stays_bounded(node: Any) -> None:
    system, host = installed(node)
    log = system.root / "var/log/ecs/ecs-agent.log"
    with log.open("a") as fh:
        for i in range(400_000):
            fh.write(f"level=info time=2026-11-30T05:00:00Z msg=\"line {i}\" module=a.go\n")
    fh_size = log.stat().st_size
    assert fh_size > 3 * BOUND_BYTES
    result = build(host, facts(), "/var/tmp/big.tar.gz", http_get=http_get)
    files = members(system.root / "var/tmp/big.tar.gz")
    assert sum(len(v.encode()) for k, v in files.items() if k != "manifest.json") <= BOUND_BYTES
    kept = files["logs/ecs-agent.log"]
    assert len(kept.encode()) <= LOG_TAIL_BYTES and 'msg="line 399999"' in kept
    assert "logs/ecs-agent.log" in result.to_dict()["truncated"]


def test_the_bound_cuts_logs_from_the_front_and_names_what_it_left_out() -> None:
    out = Collection([Entry("reports/a.json", b"a" * 60, "a"),
                      Entry("logs/x.log", b"old" + b"x" * 50 + b"new", "x", tail=True),
                      Entry("journal/y.txt", b"y" * 10, "y")])
    bound(out, 100)
    assert [e.name for e in out.entries] == ["reports/a.json", "logs/x.log"]
    assert out.entries[1].data.endswith(b"new") and len(out.entries[1].data) == 40
    assert out.entries[1].truncated and out.omitted == ["journal/y.txt"]


def test_known_values_and_secret_shapes_are_both_redacted() -> None:
    redact = Redactor(["hunter22", "a"])  # a one-letter "secret" is not replaced everywhere
    text = redact('password = hunter22\nurl http://u:pw@h:1 hunter22%20 "SessionToken": "x"\n'
                  "Signature=0123456789abcdef0123 and a cat\n")
    assert "hunter22" not in text and "pw@" not in text and '"x"' not in text
    assert "0123456789abcdef0123" not in text and "a cat" in text
    assert redact.count >= 5


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANYWHERE_"))}
    return subprocess.run([sys.executable, "-m", "anywhere_agent", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_an_unwritable_output_is_one_line_with_exit_8_and_writes_nothing(
        tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("node1\n")
    (tmp_path / "blocker").write_text("a file, not a directory")
    res = cli("support-bundle", "--root", str(tmp_path), "--output", "/blocker/sub/b.tar.gz")
    assert res.returncode == ExitCode.HOST_IO, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: cannot write to") and "fix:" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "etc"]


def test_the_cli_writes_into_a_directory_and_reports_json(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("node1\n")
    (tmp_path / "out").mkdir()
    res = cli("support-bundle", "--root", str(tmp_path), "--output", "/out", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["path"].startswith("/out/anywhere-agent-support-node1-")
    written = tmp_path / doc["path"].lstrip("/")
    assert written.stat().st_mode & 0o777 == 0o600 and doc["bytes"] == written.stat().st_size
    assert "reports/preflight.json" in members(written)
    help_text = cli("support-bundle", "--help").stdout
    assert "8 MiB" in help_text and "[REDACTED]" in help_text


def test_a_proxy_password_from_a_config_file_elsewhere_is_redacted_even_bare(
        tmp_path: Path) -> None:
    password = "Zebra!Horse42"
    conf = tmp_path / "srv/agent.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text(f'region = "us-east-1"\n[proxy]\nhttp = "http://bob:{password}@p:3128"\n')
    log = tmp_path / "var/log/ecs/ecs-init.log"
    log.parent.mkdir(parents=True)
    log.write_text(f"level=warn msg=\"proxy refused user bob with {password}\"\n")
    build(Host(tmp_path, runner=lambda argv, **kw: Result(tuple(argv), 127)),
          NodeFacts(env={}, euid=0, machine="x86_64", config_path="/srv/agent.toml"),
          "/out/b.tar.gz", http_get=lambda url, timeout: (0, b""))
    files = members(tmp_path / "out/b.tar.gz")
    assert "config/agent.toml" in files and "logs/ecs-init.log" in files
    assert password not in "\n".join(files.values())
