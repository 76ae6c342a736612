"""ECS Exec's SSM binaries tarball in a bundle: from --agents-from, or downloaded from AWS's
layout as a node's `aws` source does (install/steps/ecs_exec.py reads it back)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from anywhere_agent.bundle.agents import DEB_ARCH, AgentPackage
from anywhere_agent.errors import PackageError
from anywhere_agent.host import ecs_exec
from anywhere_agent.install import sources
from anywhere_agent.install.sources import Fetcher, requests_fetcher
from anywhere_agent.install.steps.ecs_exec import binaries_from_tarball

NAME = "amazon-ssm-agent-binaries"
_NAME_RE = re.compile(rf"{NAME}_(?P<version>\d+(?:\.\d+)*)_(?P<arch>[a-z0-9_]+)\.tar\.gz")


def file_name(version: str, arch: str) -> str:
    """The name in a bundle (and in an --agents-from directory): AWS's file name carries no
    version, so the bundle's does (the node puts the binaries under bin/<version>/)."""
    return f"{NAME}_{version}_{DEB_ARCH[arch]}.tar.gz"


def from_dir(source: Path, dest: Path, arch: str) -> AgentPackage | None:
    """Copy the newest `amazon-ssm-agent-binaries_<version>_<arch>.tar.gz` for `arch` from
    `source`; None when there is none (the node then copies the SSM package's binaries)."""
    found = []
    for path in (source.iterdir() if source.is_dir() else ()):
        m = _NAME_RE.fullmatch(path.name)
        if m and path.is_file() and m.group("arch") == DEB_ARCH[arch]:
            found.append((ecs_exec.version_key(m.group("version")), m.group("version"), path))
    if not found:
        return None
    _, version, chosen = max(found)
    binaries_from_tarball(chosen.read_bytes(), str(chosen))  # refuse a broken one now
    shutil.copyfile(chosen, dest / file_name(version, arch))
    return AgentPackage(NAME, version, f"{dest.name}/{file_name(version, arch)}",
                        f"dir {source}")


def download(dest: Path, arch: str, *, region: str, package_base_url: str = "",
             proxies: dict[str, str] | None = None,
             fetch: Fetcher = requests_fetcher) -> AgentPackage:
    """The tarball at AWS's pinned version from AWS's S3 layout (or the mirror)."""
    key = ecs_exec.tarball_key(region, DEB_ARCH[arch])
    if package_base_url:
        url = f"{package_base_url.rstrip('/')}/{key}"
    else:
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        url = f"{sources.S3_BASE.format(region=region, suffix=suffix)}/{key}"
    got = fetch(url, proxies or {})
    if got.status != 200:
        raise PackageError(f"download of {url} returned HTTP {got.status}",
                           f"check --region/--package-base-url, or put {NAME}_<version>_"
                           f"{DEB_ARCH[arch]}.tar.gz in an --agents-from directory")
    binaries_from_tarball(got.body, url)
    version = ecs_exec.SSM_BINARIES_VERSION
    (dest / file_name(version, arch)).write_bytes(got.body)
    return AgentPackage(NAME, version, f"{dest.name}/{file_name(version, arch)}", url)
