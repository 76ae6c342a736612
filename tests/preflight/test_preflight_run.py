"""run_preflight end to end on a temp root: the table order, names, and the verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anywhere_agent.errors import ExitCode
from anywhere_agent.preflight import CHECKS, PreflightReport

Run = Callable[..., PreflightReport]

NAMES = [
    "root", "systemd", "platform", "disk", "memory", "time_sync", "cgroup", "masked_units",
    "writable_etc", "writable_var_lib", "writable_etc_systemd_system",
    "credentials_env", "credentials_file", "instance_role", "registration",
    "endpoint_ssm", "endpoint_ec2messages", "endpoint_ssmmessages", "endpoint_ecs",
    "package_ssm_agent", "package_ecs_init", "clock_skew",
    "ca_bundle", "gpu_driver", "gpu_container_runtime", "gpu_docker_runtime",
]
# Off unless the config asks for them (enable_gpu).
SKIPPED_WHEN_HEALTHY = ("clock_skew", "gpu_driver", "gpu_container_runtime",
                        "gpu_docker_runtime")


def test_a_healthy_host_passes_every_check_and_the_report_is_ok(
        preflight: Run, reachable: Any) -> None:
    report = preflight()
    # The fake endpoints speak no TLS, so their clock cannot be read (skip, not a failure).
    assert [(c.name, c.status) for c in report.checks] == [
        (n, "skip" if n in SKIPPED_WHEN_HEALTHY else "pass") for n in NAMES]
    assert report.ok
    assert all(c.fix == "" for c in report.checks)


def test_checks_come_in_table_order_with_stable_names_even_when_skipped(preflight: Run) -> None:
    report = preflight(network=False)
    assert [c.name for c in report.checks] == NAMES
    assert [name for name, _ in CHECKS][:8] == NAMES[:8]


def test_one_failed_check_makes_the_report_not_ok_and_the_json_says_so(
        preflight: Run, reachable: Any) -> None:
    report = preflight(euid=1000)
    assert not report.ok
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["ok"] is False and doc["counts"]["fail"] == 1
    assert [c["name"] for c in doc["checks"] if c["status"] == "fail"] == ["root"]


def test_warnings_alone_leave_the_report_ok(preflight: Run, reachable: Any, runner: Any) -> None:
    runner.ntp = "no"
    report = preflight(memory_total=lambda: 512 * 1024**2)
    assert report.ok and report.counts()["warn"] == 2


def test_the_text_report_has_one_line_per_check_and_the_fix_of_each_failure(
        preflight: Run, node: Any) -> None:
    node.remove("/run/systemd/system")
    report = preflight(network=False, euid=1000)
    lines = report.render_text().splitlines()
    assert len(lines) == len(report.checks)
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 2 and all(" -- fix: " in line for line in failed)


def test_the_preflight_command_exits_4_naming_each_failed_check_and_its_fix(
        tmp_path: Path) -> None:
    # A root without systemd (no /run/systemd/system) and no cgroups: two hard failures.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANYWHERE_"))}
    argv = [sys.executable, "-m", "anywhere_agent", "preflight", "--root", str(tmp_path),
            "--region", "us-east-1", "--no-network"]
    text = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    as_json = subprocess.run([*argv, "--json"], capture_output=True, text=True, env=env,
                             timeout=60, check=False)
    assert text.returncode == as_json.returncode == ExitCode.PREFLIGHT == 4
    assert "Traceback" not in text.stderr + as_json.stderr
    doc = json.loads(as_json.stdout)
    failed = {c["name"]: c["fix"] for c in doc["checks"] if c["status"] == "fail"}
    assert doc["ok"] is False and {"systemd", "cgroup"} <= set(failed)
    assert all(failed.values())
    for name in failed:
        (line,) = [ln for ln in text.stdout.splitlines() if ln.split()[:2] == ["FAIL", name]]
        assert " -- fix: " in line
    # Nothing under the root was changed by looking.
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "etc", "etc/os-release"]
