"""Local checks on a temp-root host: each one's pass and its fail (or warn)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.preflight import CheckResult, PreflightReport

Run = Callable[..., PreflightReport]
Pick = Callable[[PreflightReport, str], CheckResult]

GIB = 1024**3
SSM_CREDS = ("[default]\naws_access_key_id = ASIAEXAMPLE\naws_secret_access_key = s3cr3t\n"
             "aws_session_token = T0KEN\n")


def register(node: Any, mi: str = "mi-0123456789abcdef0", region: str = "us-east-1",
             key_id: str | None = None) -> None:
    node.write("/var/lib/amazon/ssm/registration",
               json.dumps({"ManagedInstanceID": mi, "Region": region}))
    node.write("/var/lib/amazon/ssm/Vault/Store/RegistrationKey",
               json.dumps({"instanceID": mi if key_id is None else key_id, "region": region,
                           "privateKey": "secret"}))


def test_root_passes_for_euid_0_and_fails_otherwise_with_a_sudo_fix(
        preflight: Run, pick: Pick) -> None:
    assert pick(preflight(euid=0), "root").status == "pass"
    result = pick(preflight(euid=1000), "root")
    assert result.status == "fail"
    assert "uid 1000" in result.summary and "sudo" in result.fix


def test_systemd_fails_when_run_systemd_system_is_missing(
        preflight: Run, pick: Pick, node: Any) -> None:
    assert pick(preflight(), "systemd").status == "pass"
    node.remove("/run/systemd/system")
    result = pick(preflight(), "systemd")
    assert result.status == "fail" and "/run/systemd/system" in result.summary


def test_platform_names_the_distro_and_arch_it_detected(preflight: Run, pick: Pick) -> None:
    result = pick(preflight(machine="aarch64"), "platform")
    assert result.status == "pass"
    assert result.summary == "Debian GNU/Linux 12 (bookworm), aarch64 (arm64), apt"


def test_platform_fails_on_an_unsupported_architecture(preflight: Run, pick: Pick) -> None:
    result = pick(preflight(machine="armv7l"), "platform")
    assert result.status == "fail"
    assert "armv7l" in result.summary and "x86_64" in result.fix


def test_platform_fails_on_an_unsupported_distribution(
        preflight: Run, pick: Pick, node: Any) -> None:
    node.write("/etc/os-release", "ID=gentoo\n")
    result = pick(preflight(), "platform")
    assert result.status == "fail" and "gentoo" in result.summary


def test_platform_falls_back_to_usr_lib_os_release_and_fails_without_either(
        preflight: Run, pick: Pick, node: Any) -> None:
    node.remove("/etc/os-release")
    assert pick(preflight(), "platform").status == "fail"
    node.write("/usr/lib/os-release", "ID=ubuntu\nVERSION_ID=24.04\n")
    assert pick(preflight(), "platform").status == "pass"


@pytest.mark.parametrize(("free", "status"), [
    (5 * GIB, "pass"), (2 * GIB, "pass"), (2 * GIB - 1, "warn"), (1 * GIB, "warn"),
    (1 * GIB - 1, "fail"),
])
def test_disk_warns_under_2_gib_and_fails_under_1_gib(
        preflight: Run, pick: Pick, free: int, status: str) -> None:
    result = pick(preflight(disk_free=lambda path: free), "disk")
    assert result.status == status
    assert bool(result.fix) == (status != "pass")


def test_disk_reports_the_worst_of_var_lib_and_var(preflight: Run, pick: Pick, node: Any) -> None:
    node.mkdir("/var/lib")
    free = {node.root / "var/lib": 10 * GIB, node.root / "var": GIB // 2}
    result = pick(preflight(disk_free=lambda path: free[path]), "disk")
    assert result.status == "fail"
    assert result.summary == "/var/lib 10.0 GiB free, /var 0.5 GiB free"


def test_disk_is_measured_under_the_host_root_at_the_nearest_existing_dir(
        preflight: Run, pick: Pick, node: Any) -> None:
    seen: list[Path] = []

    def measure(path: Path) -> int:
        seen.append(path)
        return 9 * GIB

    pick(preflight(disk_free=measure), "disk")
    assert seen == [node.root / "var/lib", node.root / "var"]
    (node.root / "var/lib").rmdir()
    (node.root / "var").rmdir()
    seen.clear()
    pick(preflight(disk_free=measure), "disk")
    assert seen == [node.root, node.root]


def test_disk_default_measures_the_real_filesystem(preflight: Run, pick: Pick) -> None:
    from anywhere_agent.preflight.context import disk_free

    result = pick(preflight(disk_free=disk_free), "disk")
    assert result.summary.startswith("/var/lib ") and "GiB free" in result.summary


def test_memory_warns_under_1_gib_and_never_fails(preflight: Run, pick: Pick) -> None:
    assert pick(preflight(memory_total=lambda: GIB), "memory").status == "pass"
    result = pick(preflight(memory_total=lambda: GIB // 2), "memory")
    assert result.status == "warn" and result.summary == "only 0.5 GiB RAM"


def test_memory_default_reads_psutil(preflight: Run, pick: Pick) -> None:
    from anywhere_agent.preflight.context import memory_total

    assert memory_total() > 0
    assert "RAM" in pick(preflight(memory_total=memory_total), "memory").summary


@pytest.mark.parametrize(("answer", "status", "words"), [
    ("yes", "pass", "synchronised"),
    ("no", "warn", "not NTP-synchronised"),
    (None, "warn", "cannot tell"),
])
def test_time_sync_asks_timedatectl_and_warns_unless_synchronised(
        preflight: Run, pick: Pick, runner: Any, answer: str | None, status: str,
        words: str) -> None:
    runner.ntp = answer
    result = pick(preflight(), "time_sync")
    assert result.status == status and words in result.summary
    assert ("timedatectl", "show", "-p", "NTPSynchronized", "--value") in runner.calls
    if status == "warn":
        assert "5 minutes" in result.fix


def test_cgroup_reports_v2_v1_and_hybrid_and_fails_without_any(
        preflight: Run, pick: Pick, node: Any) -> None:
    assert "v2" in pick(preflight(), "cgroup").summary
    node.remove("/sys/fs/cgroup/cgroup.controllers")
    node.mkdir("/sys/fs/cgroup/memory")
    result = pick(preflight(), "cgroup")
    assert result.status == "pass" and result.summary == "cgroup v1 mounted at /sys/fs/cgroup"
    node.mkdir("/sys/fs/cgroup/unified")
    assert "hybrid" in pick(preflight(), "cgroup").summary
    node.remove("/sys/fs/cgroup/unified")
    node.remove("/sys/fs/cgroup/memory")
    result = pick(preflight(), "cgroup")
    assert result.status == "fail" and result.fix


def test_writable_targets_pass_on_a_writable_root(preflight: Run, pick: Pick) -> None:
    report = preflight()
    for name in ("writable_etc", "writable_var_lib", "writable_etc_systemd_system"):
        assert pick(report, name).status == "pass"


def test_writable_fails_with_the_host_io_fix_when_the_target_cannot_take_a_file(
        preflight: Run, pick: Pick, node: Any) -> None:
    # As root, permissions cannot stop a write, so make /var/lib a file instead: creating a
    # file "in" it fails with ENOTDIR through the real Host.check_writable.
    (node.root / "var/lib").rmdir()
    node.write("/var/lib", "not a directory")
    result = pick(preflight(), "writable_var_lib")
    assert result.status == "fail"
    assert result.summary.startswith("cannot write to") and "var/lib" in result.summary
    assert result.fix == "check the path and its permissions"
    assert pick(preflight(), "writable_etc").status == "pass"


def test_credential_variables_fail_naming_them_but_never_their_values(
        preflight: Run, pick: Pick) -> None:
    assert pick(preflight(env={"PATH": "/usr/bin", "AWS_REGION": "x"}),
                "credentials_env").status == "pass"
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "hunter2",
           "AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": ""}
    result = pick(preflight(env=env), "credentials_env")
    assert result.status == "fail"
    assert result.summary == ("credential variables set: AWS_ACCESS_KEY_ID, "
                              "AWS_SECRET_ACCESS_KEY, AWS_PROFILE")
    assert "unset AWS_ACCESS_KEY_ID" in result.fix
    text = result.summary + result.fix
    assert "AKIAEXAMPLE" not in text and "hunter2" not in text and "prod" not in text


def test_credentials_file_absent_passes(preflight: Run, pick: Pick) -> None:
    assert pick(preflight(), "credentials_file").status == "pass"


def test_credentials_file_on_an_unregistered_host_fails_with_move_aside_fix(
        preflight: Run, pick: Pick, node: Any) -> None:
    node.write("/root/.aws/credentials", SSM_CREDS)
    result = pick(preflight(), "credentials_file")
    assert result.status == "fail"
    assert "no SSM registration" in result.summary and "mv /root/.aws/credentials" in result.fix


def test_credentials_file_written_by_the_ssm_agent_passes(
        preflight: Run, pick: Pick, node: Any) -> None:
    register(node)
    node.write("/root/.aws/credentials", SSM_CREDS)
    result = pick(preflight(), "credentials_file")
    assert result.status == "pass" and "mi-0123456789abcdef0" in result.summary
    assert "s3cr3t" not in result.summary


def test_credentials_file_with_long_term_keys_in_default_fails(
        preflight: Run, pick: Pick, node: Any) -> None:
    register(node)
    node.write("/root/.aws/credentials",
               "[default]\naws_access_key_id = AKIA\naws_secret_access_key = x\n")
    result = pick(preflight(), "credentials_file")
    assert result.status == "fail" and "no session token" in result.summary


def test_credentials_file_with_other_profiles_warns(preflight: Run, pick: Pick, node: Any) -> None:
    register(node)
    node.write("/root/.aws/credentials", SSM_CREDS + "[backup]\naws_access_key_id = AKIA\n")
    result = pick(preflight(), "credentials_file")
    assert result.status == "warn" and result.summary.endswith("besides default: backup")


def test_an_unreadable_file_fails_only_its_own_check(preflight: Run, pick: Pick, node: Any) -> None:
    (node.root / "root/.aws").mkdir(parents=True)
    os.symlink("credentials", node.root / "root/.aws/credentials")  # ELOOP on read
    report = preflight()
    result = pick(report, "credentials_file")
    assert result.status == "fail" and result.summary.startswith("cannot read")
    assert pick(report, "registration").status == "pass"


def test_registration_absent_passes(preflight: Run, pick: Pick) -> None:
    result = pick(preflight(), "registration")
    assert result.status == "pass" and result.summary == "not registered with SSM yet"


def test_registration_in_the_configured_region_passes(
        preflight: Run, pick: Pick, node: Any) -> None:
    register(node)
    node.write("/var/lib/anywhere-agent/state.json",
               json.dumps({"identity": {"machine_id": "0123456789abcdef0123456789abcdef"}}))
    result = pick(preflight(), "registration")
    assert result.status == "pass"
    assert result.summary == "registered as mi-0123456789abcdef0 in us-east-1"


def test_registration_in_another_region_warns(preflight: Run, pick: Pick, node: Any) -> None:
    register(node, region="eu-west-1")
    result = pick(preflight(), "registration")
    assert result.status == "warn"
    assert "registered in eu-west-1 but region is us-east-1" in result.summary
    assert "re-registers" in result.fix


def test_an_interrupted_registration_with_an_empty_instance_id_warns(
        preflight: Run, pick: Pick, node: Any) -> None:
    node.write("/var/lib/amazon/ssm/Vault/Store/RegistrationKey",
               json.dumps({"instanceID": "", "region": "us-east-1"}))
    result = pick(preflight(), "registration")
    assert result.status == "warn" and "empty instanceID" in result.summary


def test_a_registration_key_naming_another_instance_warns(
        preflight: Run, pick: Pick, node: Any) -> None:
    register(node, key_id="mi-fffffffffffffffff")
    result = pick(preflight(), "registration")
    assert result.status == "warn" and "mi-fffffffffffffffff" in result.summary


def test_a_changed_machine_id_is_reported_as_a_clone(preflight: Run, pick: Pick, node: Any) -> None:
    register(node)
    node.write("/var/lib/anywhere-agent/state.json",
               json.dumps({"identity": {"machine_id": "ffffffffffffffffffffffffffffffff"}}))
    result = pick(preflight(), "registration")
    assert result.status == "warn" and "cloned" in result.summary


def test_a_malformed_registration_file_warns_and_never_fails(
        preflight: Run, pick: Pick, node: Any) -> None:
    node.write("/var/lib/amazon/ssm/registration", "{not json")
    result = pick(preflight(), "registration")
    assert result.status == "warn" and "no ManagedInstanceID" in result.summary
