"""Distro and architecture detection: one flat function of /etc/os-release and `uname -m`."""

from __future__ import annotations

import platform as _platform
import shlex
from dataclasses import dataclass

from anywhere_agent.errors import PreflightError
from anywhere_agent.host.gateway import Host

# os-release ID (or ID_LIKE) -> (family, package manager). Order matters only for ID_LIKE.
_DISTROS: dict[str, tuple[str, str]] = {
    "debian": ("deb", "apt"),
    "ubuntu": ("deb", "apt"),
    "rhel": ("rpm", "dnf"),
    "centos": ("rpm", "dnf"),
    "rocky": ("rpm", "dnf"),
    "almalinux": ("rpm", "dnf"),
    "ol": ("rpm", "dnf"),
    "fedora": ("rpm", "dnf"),
    "amzn": ("rpm", "dnf"),
    "sles": ("suse", "zypper"),
    "opensuse-leap": ("suse", "zypper"),
    "suse": ("suse", "zypper"),
}
# uname -m -> the architecture names AWS's package layout uses.
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class Platform:
    distro: str  # os-release ID, e.g. debian, ubuntu, rhel, amzn, sles
    version: str  # VERSION_ID, e.g. "12", "2023"
    family: str  # deb | rpm | suse
    package_manager: str  # apt | dnf | yum | zypper
    arch: str  # amd64 | arm64
    machine: str  # raw uname -m
    pretty_name: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "distro": self.distro, "version": self.version, "family": self.family,
            "package_manager": self.package_manager, "arch": self.arch, "machine": self.machine,
            "pretty_name": self.pretty_name,
        }


def parse_os_release(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip("\"'")]
        fields[key.strip()] = parts[0] if parts else ""
    return fields


def detect(os_release: str, machine: str) -> Platform:
    """Platform from the text of /etc/os-release and `uname -m`; raises PreflightError."""
    fields = parse_os_release(os_release)
    distro = fields.get("ID", "").lower()
    version = fields.get("VERSION_ID", "")
    candidates = [distro, *fields.get("ID_LIKE", "").lower().split()]
    match = next((c for c in candidates if c in _DISTROS), None)
    if match is None:
        raise PreflightError(
            f"unsupported distribution {distro or 'unknown'!r}",
            "use Debian, Ubuntu, RHEL/CentOS/Rocky/Alma, Fedora, Amazon Linux 2/2023 or SUSE",
        )
    family, manager = _DISTROS[match]
    # Amazon Linux 2 and EL7 have yum, not dnf.
    if (distro == "amzn" and version == "2") or (
        family == "rpm" and distro != "fedora" and version.split(".")[0] in ("6", "7")
    ):
        manager = "yum"
    arch = _ARCHES.get(machine)
    if arch is None:
        raise PreflightError(
            f"unsupported architecture {machine!r}",
            "ECS Anywhere runs on x86_64 and aarch64 (arm64) hosts only",
        )
    return Platform(distro, version, family, manager, arch, machine,
                    fields.get("PRETTY_NAME", ""))


def uname_machine() -> str:
    return _platform.machine()


def read_os_release(host: Host) -> str | None:
    """os-release(5): /etc/os-release, falling back to /usr/lib/os-release."""
    return host.read_text("/etc/os-release") or host.read_text("/usr/lib/os-release")


def host_platform(host: Host) -> Platform:
    """The platform of the host the gateway points at; raises PreflightError."""
    return detect(read_os_release(host) or "", uname_machine())
