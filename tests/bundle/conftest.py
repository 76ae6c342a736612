"""Fixtures for the bundle tests: lab-double agent packages and one bundle built per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from anywhere_agent.bundle.build import BundleInfo, BundleSpec, build_bundle


@pytest.fixture(scope="session")
def lab_repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The lab's agent-double .debs, apt repo and signed S3 layout (dpkg-deb and gpg)."""
    if not (shutil.which("dpkg-deb") and shutil.which("gpg")):
        pytest.skip("building the lab-double packages needs dpkg-deb and gpg (make deps)")
    from anywhere_agent.lab.doubles.packaging import build_repos

    base = tmp_path_factory.mktemp("repos")
    yield build_repos(base / "repos", signing_home=base / "gnupg")


@pytest.fixture(scope="session")
def built_bundle(tmp_path_factory: pytest.TempPathFactory, lab_repos: object) -> BundleInfo:
    """A real bundle for this machine (pip download from the configured index)."""
    from anywhere_agent.host import ecs_exec

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    apt_dir: Path = lab_repos.apt_dir  # type: ignore[attr-defined]
    # An operator's --agents-from directory: the packages, and ECS Exec's tarball from AWS's
    # layout saved under the versioned name the bundle expects.
    agents_from = tmp_path_factory.mktemp("agents-from")
    for deb in apt_dir.glob("*.deb"):
        shutil.copyfile(deb, agents_from / deb.name)
    s3_dir: Path = lab_repos.s3_dir  # type: ignore[attr-defined]
    shutil.copyfile(s3_dir / ecs_exec.tarball_key("us-east-1", "amd64"),
                    agents_from / f"amazon-ssm-agent-binaries_{ecs_exec.SSM_BINARIES_VERSION}"
                                  "_amd64.tar.gz")
    return build_bundle(BundleSpec(out=out, arch="x86_64", distro_family="deb",
                                   agents_from=agents_from, tarball=True))


@pytest.fixture
def fake_agents(tmp_path: Path) -> Path:
    """Stand-in package files (not real .debs: versions come from their names)."""
    d = tmp_path / "agents-src"
    d.mkdir()
    for name in ("amazon-ssm-agent_3.3.1.0-1_amd64.deb", "amazon-ssm-agent_3.3.1.0-1_arm64.deb",
                 "amazon-ecs-init_1.90.0-1_amd64.deb", "amazon-ecs-init_1.90.0-1_arm64.deb",
                 "amazon-ssm-agent-3.3.1.0-1.x86_64.rpm", "amazon-ecs-init-1.90.0-1.x86_64.rpm"):
        (d / name).write_bytes(name.encode())
    return d
