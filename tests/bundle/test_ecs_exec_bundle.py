"""The bundle carries ECS Exec's binaries tarball, and a node's bundle source installs it."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from anywhere_agent.bundle import ecs_exec as bundle_exec
from anywhere_agent.bundle.build import BundleInfo
from anywhere_agent.config import Config
from anywhere_agent.errors import PackageError
from anywhere_agent.host import ecs_exec
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.host.platform import Platform
from anywhere_agent.install.apply import Progress, apply
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.journal import Journal
from anywhere_agent.install.sources import Download, PackageSource
from anywhere_agent.install.steps import ExecBinariesStep

VERSION = ecs_exec.SSM_BINARIES_VERSION
TARBALL = f"amazon-ssm-agent-binaries_{VERSION}_amd64.tar.gz"


def test_a_built_bundle_carries_the_tarball_in_its_manifest_and_bundle_json(
        built_bundle: BundleInfo) -> None:
    data = json.loads((built_bundle.path / "bundle.json").read_text())
    assert data["ecs_exec"]["version"] == VERSION
    assert data["ecs_exec"]["file"] == f"agents/{TARBALL}"
    assert f"agents/{TARBALL}" in (built_bundle.path / "manifest.sha256").read_text()


def test_a_node_installs_ecs_exec_binaries_from_a_built_bundle(
        built_bundle: BundleInfo, tmp_path: Path) -> None:
    host = Host(tmp_path)
    shutil.copytree(built_bundle.path, tmp_path / "opt/bundle")
    cfg = Config(region="us-east-1", package_source="bundle", bundle_dir="/opt/bundle")
    platform = Platform("debian", "12", "deb", "apt", "amd64", "x86_64")
    ctx = InstallContext(cfg=cfg, host=host, platform=platform, journal=Journal(host),
                  source=PackageSource(cfg, host, platform, PackageManager(host, "apt")))
    apply(ctx, Progress(io.StringIO(), tty=False), [ExecBinariesStep()])
    for name in ecs_exec.BINARIES:
        assert host.mode(f"{ecs_exec.BIN_DIR}/{VERSION}/{name}") == 0o755
    assert ecs_exec.versions(host) == [VERSION]


def test_an_agents_dir_without_the_tarball_builds_a_bundle_without_it(tmp_path: Path) -> None:
    assert bundle_exec.from_dir(tmp_path, tmp_path, "x86_64") is None


def test_a_broken_tarball_in_the_agents_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "dest").mkdir()
    (tmp_path / "src" / TARBALL).write_bytes(b"not gzip")
    with pytest.raises(PackageError, match=r"is not a readable tar\.gz"):
        bundle_exec.from_dir(tmp_path / "src", tmp_path / "dest", "x86_64")


def test_an_online_build_downloads_the_tarball_from_awss_layout(
        tmp_path: Path, lab_repos: object) -> None:
    s3_dir: Path = lab_repos.s3_dir  # type: ignore[attr-defined]
    asked: list[str] = []

    def fetch(url: str, proxies: dict[str, str]) -> Download:
        asked.append(url)
        path = s3_dir / urlparse(url).path.lstrip("/")
        return Download(url, 200, path.read_bytes()) if path.is_file() else \
            Download(url, 404, b"")

    got = bundle_exec.download(tmp_path, "arm64", region="us-east-1", fetch=fetch)
    assert asked == ["https://s3.us-east-1.amazonaws.com/amazon-ssm-us-east-1/"
                     f"{VERSION}/linux_arm64/amazon-ssm-agent-binaries.tar.gz"]
    assert (got.version, got.file) == (VERSION, f"{tmp_path.name}/amazon-ssm-agent-binaries_"
                                                f"{VERSION}_arm64.tar.gz")
    with pytest.raises(PackageError, match="returned HTTP 404"):
        bundle_exec.download(tmp_path, "x86_64", region="eu-west-3", fetch=fetch)
