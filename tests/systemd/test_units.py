"""The unit and drop-ins pass `systemd-analyze verify` with nothing on stderr, and stay hardened.

verify exits 0 even for unknown keys (machine-notes), so stderr is the signal. It also
requires ExecStart's binary to exist: the unit is verified as a temporary copy whose
ExecStart points at the running Python interpreter. Drop-ins are verified on top of a
stand-in base unit found through $SYSTEMD_UNIT_PATH, the way systemd finds real drop-ins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "anywhere-agent.service"
DROP_INS = {"ecs.service": SYSTEMD / "ecs.service.d" / "10-anywhere-agent.conf",
            "amazon-ssm-agent.service":
                SYSTEMD / "amazon-ssm-agent.service.d" / "10-anywhere-agent.conf"}

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def analyze(*args: str, unit_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if unit_path is not None:
        env["SYSTEMD_UNIT_PATH"] = f"{unit_path}:"  # trailing ':' keeps the default path
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def supervisor_copy(tmp_path: Path) -> Path:
    text = UNIT.read_text().replace("/usr/local/bin/anywhere-agent", sys.executable)
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def drop_in_tree(tmp_path: Path, base: str, conf: Path, extra: str = "") -> Path:
    (tmp_path / base).write_text("[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n")
    (tmp_path / f"{base}.d").mkdir()
    (tmp_path / f"{base}.d" / conf.name).write_text(conf.read_text() + extra)
    return tmp_path / base


def test_the_supervisor_unit_verifies_with_empty_stderr(tmp_path: Path) -> None:
    res = analyze("verify", str(supervisor_copy(tmp_path)))
    assert (res.returncode, res.stderr) == (0, "")


@pytest.mark.parametrize("base", sorted(DROP_INS))
def test_each_drop_in_verifies_with_empty_stderr(tmp_path: Path, base: str) -> None:
    unit = drop_in_tree(tmp_path, base, DROP_INS[base])
    res = analyze("verify", str(unit), unit_path=tmp_path)
    assert (res.returncode, res.stderr) == (0, "")


def test_verify_does_see_a_typo_in_a_drop_in(tmp_path: Path) -> None:
    unit = drop_in_tree(tmp_path, "ecs.service", DROP_INS["ecs.service"], "RestartSex=5\n")
    res = analyze("verify", str(unit), unit_path=tmp_path)
    assert "Unknown key 'RestartSex'" in res.stderr


def test_the_rendered_proxy_template_verifies(tmp_path: Path) -> None:
    template = (SYSTEMD / "http-proxy.conf.in").read_text()
    rendered = (template.replace("@HTTP_PROXY@", "http://proxy.corp:3128")
                .replace("@HTTPS_PROXY@", "http://proxy.corp:3128")
                .replace("@NO_PROXY@", "10.0.0.0/8,.corp"))
    assert "@" not in rendered.replace("# ", "").split("[Service]", 1)[1]
    conf = tmp_path / "src" / "http-proxy.conf"
    conf.parent.mkdir()
    conf.write_text(rendered)
    units = tmp_path / "units"
    units.mkdir()
    unit = drop_in_tree(units, "ecs.service", conf)
    res = analyze("verify", str(unit), unit_path=units)
    assert (res.returncode, res.stderr) == (0, "")


def directives(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_the_supervisor_is_notify_with_a_watchdog_and_bounded_restarts() -> None:
    d = directives(UNIT)
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["ExecStart"] == ["/usr/local/bin/anywhere-agent supervise"]
    assert d["WatchdogSec"] == ["2min"] and d["Restart"] == ["on-failure"]
    assert d["StartLimitIntervalSec"] and d["StartLimitBurst"]
    assert d["ProtectSystem"] == ["strict"] and d["CapabilityBoundingSet"] == [""]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]


def test_every_remaining_exposure_has_a_comment_saying_why() -> None:
    text = UNIT.read_text()
    for why in ("root", "ProtectHome=read-only", "AF_NETLINK", "PrivateNetwork=",
                "ProcSubset=pid", "IPAddressDeny="):
        assert why in text


def test_drop_ins_bound_the_crash_loop_and_respect_the_terminal_exit() -> None:
    ecs = directives(DROP_INS["ecs.service"])
    assert ecs["RestartPreventExitStatus"] == ["5"]
    for conf in DROP_INS.values():
        d = directives(conf)
        assert d["Restart"] == ["on-failure"] and d["StartLimitBurst"]


def test_security_exposure_of_the_supervisor_stays_low(tmp_path: Path) -> None:
    res = analyze("security", "--offline=true", str(supervisor_copy(tmp_path)))
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", res.stdout)
    assert m, res.stdout + res.stderr
    assert float(m[1]) <= 2.0
