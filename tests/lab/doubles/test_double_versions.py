"""The lab serves two versions of each double, and each build reports its own version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from doubles_helpers import double_env

from anywhere_agent.lab.doubles import packaging


def _extract(deb: Path, tmp: Path) -> Path:
    out = tmp / deb.stem
    subprocess.run(["dpkg-deb", "-R", str(deb), str(out)], check=True)
    return out


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_each_double_has_an_older_version_and_latest_is_the_newest(repos: Any) -> None:
    assert len(packaging.ECS_VERSIONS) >= 2 and len(packaging.SSM_VERSIONS) >= 2
    assert packaging.ECS_VERSIONS[-1] == packaging.ECS_VERSION
    assert packaging.SSM_VERSIONS[-1] == packaging.SSM_VERSION
    for arch in packaging.ARCHES:
        for name, served in (("amazon-ecs-init", packaging.ECS_VERSIONS),
                             ("amazon-ssm-agent", packaging.SSM_VERSIONS)):
            for upstream in served:
                deb = repos.versions[(name, arch, upstream)]
                assert _field(deb, "Version") == f"{upstream}-1"
            assert repos.packages[(name, arch)] == repos.versions[(name, arch, served[-1])]


def test_the_ecs_init_version_the_package_says_is_the_version_the_double_reports(
    repos: Any, tmp_path: Path, lab_root: Path
) -> None:
    old = packaging.ECS_VERSIONS[0]
    tree = _extract(repos.versions[("amazon-ecs-init", "amd64", old)], tmp_path)
    out = subprocess.run([sys.executable, str(tree / "usr/libexec/amazon-ecs-init"), "version"],
                         env=double_env(lab_root), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout.startswith(f"ecs-init version {old} (lab double)")


def test_the_ssm_agent_version_the_package_says_is_the_version_the_double_reports(
    repos: Any, tmp_path: Path, lab_root: Path
) -> None:
    old = packaging.SSM_VERSIONS[0]
    tree = _extract(repos.versions[("amazon-ssm-agent", "amd64", old)], tmp_path)
    out = subprocess.run([sys.executable, str(tree / "usr/bin/amazon-ssm-agent"), "-version"],
                         env=double_env(lab_root), capture_output=True, text=True, timeout=30)
    assert f"SSM Agent version: {old} " in out.stdout, out.stdout + out.stderr


def test_the_s3_layout_serves_each_version_under_awss_versioned_keys(repos: Any) -> None:
    s3 = repos.s3_dir
    for ver in packaging.ECS_VERSIONS:
        key = s3 / f"amazon-ecs-agent-us-east-1/amazon-ecs-init-{ver}-1.amd64.deb"
        assert key.read_bytes() == repos.versions[("amazon-ecs-init", "amd64", ver)].read_bytes()
        assert key.with_name(key.name + ".asc").is_file()
    for ver in packaging.SSM_VERSIONS:
        key = s3 / f"amazon-ssm-us-east-1/{ver}/debian_amd64/amazon-ssm-agent.deb"
        assert key.read_bytes() == repos.versions[("amazon-ssm-agent", "amd64", ver)].read_bytes()
        assert key.with_name(key.name + ".sig").is_file()
    latest = s3 / "amazon-ecs-agent-us-east-1/amazon-ecs-init-latest.amd64.deb"
    assert _field(latest, "Version") == f"{packaging.ECS_VERSION}-1"


def test_an_ecs_crash_marker_naming_versions_crashes_only_those(
    repos: Any, tmp_path: Path, lab_root: Path
) -> None:
    old, new = packaging.ECS_VERSIONS[0], packaging.ECS_VERSIONS[-1]
    fault = lab_root / "run/anywhere-lab/faults/ecs-crash"
    fault.parent.mkdir(parents=True)
    fault.write_text(f"{new}\n")
    crashed = {}
    for ver in (old, new):
        tree = _extract(repos.versions[("amazon-ecs-init", "amd64", ver)], tmp_path)
        proc = subprocess.Popen([sys.executable, str(tree / "usr/libexec/amazon-ecs-init"),
                                 "start"], env=double_env(lab_root), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            crashed[ver] = proc.wait(timeout=3) == 1
        except subprocess.TimeoutExpired:
            crashed[ver] = False
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
    assert crashed == {old: False, new: True}
    log = (lab_root / "var/log/ecs/ecs-init.log").read_text()
    assert f"lab fault ecs-crash: agent {new} exiting 1" in log
