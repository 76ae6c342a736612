"""Secrets and refusals on a real lab host: a proxy password is in no world-readable file and in
none of our output, re-runs tighten modes already on disk, and a masked unit is refused by
preflight before anything changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from anywhere_agent.errors import ExitCode
from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

CLUSTER = "secrets"
HOST = "n1"
PASSWORD = "pr0xyPassw0rd"
# Connection refused at once: the agents reach the lab directly through no_proxy, and apt has
# nothing to fetch on these re-runs (the packages are installed by then).
PROXY = f"http://alice:{PASSWORD}@127.0.0.1:9"
SECRET_FILES = ("/etc/apt/apt.conf.d/90anywhere-agent-proxy", "/etc/ecs/ecs.config",
                "/etc/anywhere-agent/proxy/ecs.env",
                "/etc/anywhere-agent/proxy/amazon-ssm-agent.env")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aasecret").running(1) as lab:
        rollout.stage(lab, [HOST], CLUSTER)
        yield lab


@pytest.fixture(scope="module")
def activation(lab: Lab) -> rollout.LabActivation:
    return rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 10)


def with_proxy(lab: Lab, proxy: str = PROXY) -> None:
    """agent.toml with the proxy: the place for a proxy password (the flags refuse one)."""
    lab_host = urlsplit(lab.control_plane_url()).hostname or ""
    rollout.write_config(lab, HOST, rollout.node_config(lab.control_plane_url(), lab.region,
                                                        CLUSTER)
                         + f'\n[proxy]\nhttp = "{proxy}"\nhttps = "{proxy}"\n'
                         f'no_proxy = "{lab_host}"\n')


def modes(lab: Lab, paths: tuple[str, ...]) -> dict[str, str]:
    out = lab.exec(HOST, ["stat", "-c", "%n %a", *paths]).stdout.decode()
    return dict(line.split() for line in out.splitlines())


def test_proxy_password_is_in_no_world_readable_file_and_none_of_our_output(
        lab: Lab, activation: Any) -> None:
    code, _, err = rollout.install(lab, HOST, activation)
    assert code == 0, err
    with_proxy(lab)
    code, result, err = rollout.install(lab, HOST, None)
    assert code == 0, err
    outputs = [json.dumps(result), err]
    assert modes(lab, SECRET_FILES) == {p: "600" for p in SECRET_FILES}
    # Every file under the places install writes that holds the password: none world-readable.
    # (/var/log/amazon/ssm is the lab SSM double's own log: not ours, see its README.)
    holders = lab.exec(HOST, ["grep", "-rlF", PASSWORD, "/etc", "/var/lib", "/run/systemd",
                              "/root"], check=False).stdout.decode().split()
    assert set(SECRET_FILES) <= set(holders)
    loose = {p: m for p, m in modes(lab, tuple(holders)).items() if int(m, 8) & 0o044}
    assert loose == {}
    # A re-run tightens files left 0644 (by an older version or by hand).
    lab.exec(HOST, ["chmod", "0644", *SECRET_FILES])
    code, result, err = rollout.install(lab, HOST, None)
    assert code == 0, err
    assert {"apt-proxy", "ecs-config", "ecs-proxy-env", "ssm-agent-proxy-env"} <= \
        set(result["changes"])
    assert modes(lab, SECRET_FILES) == {p: "600" for p in SECRET_FILES}
    outputs += [json.dumps(result), err]
    # Our own output: a plan that changes the proxy, status, the journal of our runs.
    with_proxy(lab, PROXY.replace("127.0.0.1:9", "127.0.0.1:10"))
    for argv in (["anywhere-agent", "install", "--dry-run"],
                 ["anywhere-agent", "status", "--json"],
                 # systemd shows units' Environment= to every local user: it must hold none.
                 ["systemctl", "show", "-p", "Environment", "ecs", "amazon-ssm-agent"],
                 ["cat", "/var/lib/anywhere-agent/state.json"],
                 ["journalctl", "--no-pager", "-o", "cat", "-u", "anywhere-agent"]):
        proc = lab.ssh(HOST, argv, check=False)
        outputs.append((proc.stdout + proc.stderr).decode())
    assert "alice:***@127.0.0.1:10" in outputs[-5]  # the plan shows the change, masked
    assert [o for o in outputs if PASSWORD in o] == []


def test_a_masked_ecs_unit_is_refused_by_preflight_before_any_change(
        lab: Lab, activation: Any) -> None:
    # Without the (unreachable) proxy of the test before, so uninstall can deregister.
    rollout.write_config(lab, HOST, rollout.node_config(lab.control_plane_url(), lab.region,
                                                        CLUSTER))
    proc = lab.ssh(HOST, ["anywhere-agent", "uninstall", "--force"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rollout.write_config(lab, HOST, rollout.node_config(lab.control_plane_url(), lab.region,
                                                        CLUSTER))
    lab.exec(HOST, ["systemctl", "mask", "ecs.service"])
    try:
        code, result, err = rollout.install(lab, HOST, activation)
        assert code == ExitCode.PREFLIGHT, (result, err)
        assert "systemctl unmask ecs.service" in result["fix"]
        pkgs = lab.exec(HOST, ["dpkg-query", "-W", "-f=${db:Status-Status} ${Package}\n",
                               "amazon-ssm-agent", "amazon-ecs-init"], check=False).stdout
        assert b"installed" not in pkgs.replace(b"not-installed", b""), pkgs
        assert lab.exec(HOST, ["test", "-e", "/var/lib/amazon/ssm/registration"],
                        check=False).returncode != 0
    finally:
        lab.exec(HOST, ["systemctl", "unmask", "ecs.service"])
    code, _, err = rollout.install(lab, HOST, activation)
    assert code == 0, err
