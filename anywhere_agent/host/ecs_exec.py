"""ECS Exec's files on a host (AWS's layout) and whether the ECS agent will find them usable."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from anywhere_agent.errors import PackageError
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host

# What the ECS agent bind-mounts into exec-enabled tasks (agent/app/agent_capability*.go,
# agent/engine/execcmd/manager_init_task_linux.go) and what ecs-anywhere-install.sh fills.
ROOT = agent_files.ECS_EXEC_DIR
CERTS_DIR = ROOT + "/certs"
CA_BUNDLE = CERTS_DIR + "/tls-ca-bundle.pem"
BIN_DIR = ROOT + "/bin"
# The agent's capability check also wants this directory (it writes the exec agents' config).
CONFIG_DIR = ROOT + "/config"
BINARIES = ("amazon-ssm-agent", "ssm-agent-worker", "ssm-session-worker")
CA_BUNDLE_MODE = 0o400  # the script's `chmod 400`
BINARY_MODE = 0o755

# The script's list, in its order (from Go's crypto/x509 root_linux.go): Debian/Ubuntu,
# Fedora/RHEL 6, openSUSE, OpenELEC, CentOS/RHEL 7, Alpine.
CA_BUNDLE_CANDIDATES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
)

# The binaries tarball: AWS's script pins this SSM agent version and downloads
# s3.<region>.amazonaws.com/amazon-ssm-<region>/<version>/linux_<arch>/<TARBALL>.
SSM_BINARIES_VERSION = "3.3.4108.0"
TARBALL = "amazon-ssm-agent-binaries.tar.gz"
MAX_TARBALL = 512 * 1024 * 1024  # AWS's is about 60 MiB; anything far larger is not it
# The agent takes only directories named like this as versions (validSsmVersion).
_VERSION = re.compile(r"^\d+(\.\d+)*$")
PEM_MARK = b"-----BEGIN CERTIFICATE-----"

CERTS_FIX = "set certs_file in agent.toml (or --certs-file) to the host's PEM CA bundle"
INSTALL_FIX = "run `anywhere-agent install` again (it puts ECS Exec's files in place)"


def tarball_key(region: str, arch: str, version: str = SSM_BINARIES_VERSION) -> str:
    """The bucket/key of the binaries tarball in AWS's S3 layout (and a mirror of it)."""
    return f"amazon-ssm-{region}/{version}/linux_{arch}/{TARBALL}"


def find_ca_bundle(host: Host, certs_file: str) -> str | None:
    """The CA bundle to copy: `certs_file` when set, else the first known location present.

    Unlike the script, a `certs_file` that does not exist is not silently replaced by another
    bundle: the operator named it, so its absence is an error the caller reports.
    """
    if certs_file:
        return certs_file if host.exists(certs_file) else None
    return next((p for p in CA_BUNDLE_CANDIDATES if host.exists(p)), None)


def is_pem_bundle(data: bytes | None) -> bool:
    return bool(data) and PEM_MARK in (data or b"")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def versions(host: Host) -> list[str]:
    """Version directories under BIN_DIR the agent would consider, newest first."""
    names = [n for n in host.listdir(BIN_DIR) if _VERSION.match(n)]
    return sorted(names, key=version_key, reverse=True)


@dataclass(frozen=True)
class Readiness:
    """Whether the ECS agent will offer ECS Exec here; `problems` say what is missing."""

    version: str | None
    problems: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "version": self.version, "ca_bundle": CA_BUNDLE,
                "problems": list(self.problems)}


def readiness(host: Host) -> Readiness:
    """Read-only: the CA bundle (present, PEM, 0400) and one complete binaries version."""
    problems: list[str] = []
    mode = host.mode(CA_BUNDLE)
    if mode is None:
        problems.append(f"{CA_BUNDLE} is missing")
    else:
        if not is_pem_bundle(host.read_bytes(CA_BUNDLE)):
            problems.append(f"{CA_BUNDLE} holds no PEM certificate")
        if mode != CA_BUNDLE_MODE:
            problems.append(f"{CA_BUNDLE} has mode {mode:04o}, not {CA_BUNDLE_MODE:04o}")
    if not host.exists(CONFIG_DIR):
        problems.append(f"{CONFIG_DIR} is missing")
    complete: str | None = None
    seen = versions(host)
    for version in seen:
        # The agent falls back to an older version when the newest lacks a binary.
        modes = [host.mode(f"{BIN_DIR}/{version}/{name}") for name in BINARIES]
        if all(m is not None and m & 0o111 for m in modes):
            complete = version
            break
    if complete is None:
        if seen:
            problems.append(f"no version under {BIN_DIR} has all of {', '.join(BINARIES)} "
                            "executable")
        else:
            problems.append(f"no SSM agent binaries under {BIN_DIR}")
    return Readiness(complete, tuple(problems))


def binaries_from_tarball(data: bytes, origin: str) -> dict[str, bytes]:
    """The three binaries, by name, from amazon-ssm-agent-binaries.tar.gz (top level, as AWS
    packs it; a leading directory is tolerated). Nothing is extracted to disk by path."""
    if len(data) > MAX_TARBALL:
        raise PackageError(f"{origin} is larger than {MAX_TARBALL >> 20} MiB",
                           "check package_base_url points at AWS's layout")
    # Imported here: the supervisor's ECS Exec probe uses this module but never a tarball,
    # and tarfile (with shutil, bz2, lzma) would stay resident in the daemon.
    import io
    import tarfile

    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in BINARIES and name not in found:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        found[name] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PackageError(f"{origin} is not a readable tar.gz ({err})",
                           "download it again (a proxy may have cut it short)") from None
    missing = [n for n in BINARIES if n not in found]
    if missing:
        raise PackageError(f"{origin} lacks {', '.join(missing)}",
                           "use AWS's amazon-ssm-agent-binaries.tar.gz")
    return found
