"""The SSM agent and ecs-init packages of a bundle: taken from a directory, or downloaded and
signature-checked through the node's `aws` package source (install/sources.py)."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from anywhere_agent.config import Config
from anywhere_agent.errors import PackageError
from anywhere_agent.host import agent_files, pins
from anywhere_agent.host.gateway import Host, Runner, subprocess_runner
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.host.platform import Platform
from anywhere_agent.install.sources import Fetcher, PackageSource, requests_fetcher

LOG = logging.getLogger(__name__)

PACKAGES = (agent_files.SSM_PACKAGE, agent_files.ECS_PACKAGE)
# Our --arch spelling -> the arch names each package format uses in file names.
DEB_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
RPM_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}
_VERSION_RE = re.compile(r"[0-9][0-9A-Za-z.+~:-]*")


@dataclass(frozen=True)
class AgentPackage:
    package: str
    version: str
    file: str  # path relative to the bundle
    origin: str  # "dir <path>" or the URL it was downloaded from

    def to_dict(self) -> dict[str, str]:
        return {"version": self.version, "file": self.file, "origin": self.origin}


def arch_names(arch: str, family: str) -> tuple[str, ...]:
    return (DEB_ARCH[arch], "all") if family == "deb" else (RPM_ARCH[arch], "noarch")


def bundle_name(package: str, version: str, arch: str, family: str) -> str:
    """The name inside the bundle; it carries the arch the node's bundle source looks for."""
    if family == "deb":
        return f"{package}_{version}_{DEB_ARCH[arch]}.deb"
    return f"{package}-{version}.{RPM_ARCH[arch]}.rpm"


def package_version(path: Path, package: str, family: str,
                    run: Runner = subprocess_runner) -> str:
    """The package's own version (dpkg-deb / rpm), else what its file name says, else unknown."""
    argv = (["dpkg-deb", "-f", str(path), "Version"] if family == "deb"
            else ["rpm", "-qp", "--nosignature", "--qf", "%{VERSION}-%{RELEASE}", str(path)])
    res = run(argv, timeout=60)
    version = res.stdout.strip() if res.returncode == 0 else ""
    if version and _VERSION_RE.fullmatch(version):
        return version
    # Debian names files name_version_arch.deb, RPM name-version-release.arch.rpm.
    pattern = (rf"{re.escape(package)}_([^_]+)_[^_]+\.deb" if family == "deb"
               else rf"{re.escape(package)}-(.+)\.[A-Za-z0-9_]+\.rpm")
    m = re.fullmatch(pattern, path.name)
    return m.group(1) if m and _VERSION_RE.fullmatch(m.group(1)) else "unknown"


def from_dir(source: Path, dest: Path, arch: str, family: str,
             run: Runner = subprocess_runner,
             versions: Mapping[str, Sequence[str]] | None = None) -> list[AgentPackage]:
    """Copy each agent from `source` into `dest`: the versions pinned in `versions` (package ->
    pins; a node's bundle source selects among them), else the newest one there."""
    ext = "." + family
    names = arch_names(arch, family)
    out: list[AgentPackage] = []
    for package in PACKAGES:
        found = [
            p for p in source.iterdir()
            if p.is_file() and p.name.startswith(package) and p.name.endswith(ext)
            and any(a in p.name[len(package):] for a in names)
        ] if source.is_dir() else []
        if not found:
            raise PackageError(f"no {package} {ext} for {arch} in {source}",
                               f"put the {family} package of {package} for {arch} there")
        by_version = sorted(((package_version(p, package, family, run), p) for p in found),
                            key=lambda vp: (pins.version_key(vp[0]), vp[1].name))
        wanted = list((versions or {}).get(package, ())) or [""]
        for pin in wanted:
            matching = [vp for vp in by_version if not pin or pins.satisfies(vp[0], pin)]
            if not matching:
                have = ", ".join(v for v, _ in by_version)
                raise PackageError(f"no {package} {pin} {ext} for {arch} in {source} "
                                   f"(there: {have})",
                                   f"put that version there, or change "
                                   f"{pins.option(package)}")
            version, chosen = matching[-1]
            target = dest / bundle_name(package, version, arch, family)
            shutil.copyfile(chosen, target)
            out.append(AgentPackage(package, version, f"{dest.name}/{target.name}",
                                    f"dir {source}"))
    return out


def download(dest: Path, arch: str, family: str, *, region: str, package_base_url: str = "",
             signing_key: Path | None = None, proxies: dict[str, str] | None = None,
             fetch: Fetcher = requests_fetcher,
             run: Runner = subprocess_runner,
             versions: Mapping[str, Sequence[str]] | None = None) -> list[AgentPackage]:
    """Download each agent the way a node's `aws` source does, GPG-verified, into `dest`:
    AWS's versioned key for each version pinned in `versions`, else `latest`."""
    out: list[AgentPackage] = []
    with tempfile.TemporaryDirectory(prefix="anywhere-agent-bundle-dl.") as tmp:
        # The node code works on a Host root: give it a scratch one on this machine.
        host = Host(tmp, runner=run)
        key = ""
        if signing_key is not None:
            try:
                data = signing_key.read_bytes()
            except OSError as err:
                raise PackageError(f"cannot read signing key {signing_key}: {err.strerror}",
                                   "pass --signing-key with an ASCII-armoured public key") from None
            key = "/signing-key.asc"
            host.write_atomic(key, data, 0o644)
        http = proxies or {}
        cfg = Config(region=region, package_base_url=package_base_url, package_signing_key=key)
        cfg = _with_proxies(cfg, http)
        platform = Platform(distro="bundle", version="", family=family,
                            package_manager="apt" if family == "deb" else "dnf",
                            arch=DEB_ARCH[arch], machine=RPM_ARCH[arch])
        source = PackageSource(cfg, host, platform, PackageManager(host, platform.package_manager),
                               fetch)
        for package in PACKAGES:
            for pin in list((versions or {}).get(package, ())) or [""]:
                # The node's own download + `gpg --verify` against trusted keys only, from
                # the key a node pinned to `pin` would use.
                pinned = source.pinned_to(package, pin)
                url = pinned.describe(package)
                local = Path(pinned.download_verified(package))
                version = package_version(local, package, family, run)
                if pin and not pins.satisfies(version, pin):
                    raise PackageError(f"{url} holds {package} {version}, not {pin}",
                                       "check the mirror (package_base_url) serves AWS's layout")
                target = dest / bundle_name(package, version, arch, family)
                shutil.copyfile(local, target)
                out.append(AgentPackage(package, version, f"{dest.name}/{target.name}", url))
    return out


def _with_proxies(cfg: Config, proxies: dict[str, str]) -> Config:
    if not proxies:
        return cfg
    import dataclasses

    proxy = dataclasses.replace(cfg.proxy, http=proxies.get("http", ""),
                                https=proxies.get("https", ""))
    return dataclasses.replace(cfg, proxy=proxy)
