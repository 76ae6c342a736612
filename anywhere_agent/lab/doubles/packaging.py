"""Build the lab's package repos: the doubles as .debs, a flat apt repo and AWS's S3 layout.

`build_repos(out_dir)` writes, with `dpkg-deb` and `gpg` on the build machine:

    out_dir/apt/      flat apt repo (Packages, Packages.gz, Release, InRelease, Release.gpg)
    out_dir/s3/       the paths ecs-anywhere-install.sh downloads, per region (see README.md)
    out_dir/github/   the two public-key files the script fetches from raw.githubusercontent.com
    out_dir/keys/     the lab signing key, exported (ASCII armour)

Signatures are made by a lab key generated once into `signing_home` (a GnuPG home dir).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from anywhere_agent.errors import LabError
from anywhere_agent.host import ecs_exec

LOG = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SSM_VERSION = "3.3.1802.0"  # keep equal to ssm_agent.VERSION (a test checks)
ECS_VERSION = "1.105.1"  # keep equal to ecs_agent.AGENT_VERSION (a test checks)
# Every version the lab serves, oldest first; the last is "latest" (the apt candidate and the
# S3 `latest` keys), so hosts that pin nothing get what they always got. The older ones make
# upgrade and rollback real package changes. Each build carries its version in the double's
# own constant, as a real agent binary carries its version compiled in.
SSM_VERSIONS = ("3.3.1611.0", SSM_VERSION)
ECS_VERSIONS = ("1.105.0", ECS_VERSION)
# The line of each double that holds its version, rewritten per build.
_VERSION_LINES = {"ssm_agent.py": 'VERSION = "{}"', "ecs_agent.py": 'AGENT_VERSION = "{}"'}
DEB_REVISION = "1"
ARCHES = ("amd64", "arm64")
DEFAULT_REGIONS = ("us-east-1",)
KEY_UID = (
    "anywhere-agent LAB package signing key (lab only, not AWS) "
    "<lab-signing@anywhere-agent.invalid>"
)
STAMP = ".build-stamp"
# Which Debian package provides each tool, so a missing one names its fix.
TOOLS = {"dpkg-deb": "dpkg", "gpg": "gnupg", "gpgconf": "gnupg"}

SSM_UNIT = """\
# LAB DOUBLE: anywhere-agent lab stand-in for amazon-ssm-agent (not the AWS agent).
# Same unit as the real package's packaging/ubuntu/amazon-ssm-agent.service.
[Unit]
Description=amazon-ssm-agent
After=network-online.target

[Service]
Type=simple
WorkingDirectory=/usr/bin/
ExecStart=/usr/bin/amazon-ssm-agent
KillMode=process

# Restart the agent regardless of whether it crashes (and returns a non-zero result code) or if
# is terminated normally (e.g. via 'kill -HUP').  Delay restart so that the agent is less likely
# to restart during a reboot initiated by a script. If the agent exits with status 194 (reboot
# requested), don't restart at all.
Restart=always
RestartPreventExitStatus=194
RestartSec=90

[Install]
WantedBy=multi-user.target
"""

ECS_UNIT = """\
# LAB DOUBLE: anywhere-agent lab stand-in for amazon-ecs-init (not the AWS agent).
# Same unit as amazon-ecs-agent packaging/generic-deb-integrated/debian/ecs.service. On a lab
# host without Docker (docker_source = none) the Docker lines are inert: Wants= of a unit that
# does not exist is no error, and the double runs without Docker.
[Unit]
Description=Amazon Elastic Container Service - container agent (anywhere-agent lab double)
Documentation=https://aws.amazon.com/documentation/ecs/
Wants=docker.service
PartOf=docker.service
After=docker.service

[Service]
Type=simple
Restart=on-failure
RestartSec=10s
EnvironmentFile=-/var/lib/ecs/ecs.config
EnvironmentFile=-/etc/ecs/ecs.config
ExecStartPre=/usr/libexec/amazon-ecs-init pre-start
ExecStart=/usr/libexec/amazon-ecs-init start
ExecStop=/usr/libexec/amazon-ecs-init stop
ExecStopPost=/usr/libexec/amazon-ecs-init post-stop

[Install]
WantedBy=multi-user.target
"""

# The real deb's maintainer scripts (packaging/ubuntu/{preinst,postinst,prerm}), minus upstart
# and snap branches that lab hosts never take. postinst enables and starts the agent like the real
# one does; daemon-reload comes first here so the new unit file is seen before `enable`.
SSM_PREINST = """#!/bin/sh
echo "Preparing for install (amazon-ssm-agent LAB DOUBLE)"
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    systemctl stop amazon-ssm-agent || true
    systemctl daemon-reload || true
fi
exit 0
"""
SSM_POSTINST = """#!/bin/sh
echo "Starting agent (amazon-ssm-agent LAB DOUBLE)"
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    systemctl daemon-reload
    systemctl enable amazon-ssm-agent
    systemctl start amazon-ssm-agent
fi
exit 0
"""
SSM_PRERM = """#!/bin/sh
echo "Stopping agent (amazon-ssm-agent LAB DOUBLE)"
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    systemctl stop amazon-ssm-agent || true
    systemctl disable amazon-ssm-agent || true
    systemctl daemon-reload || true
fi
exit 0
"""
# The real amazon-ecs-init deb is built with `dh_installsystemd --no-start --no-enable`: it only
# reloads systemd on install and never enables or starts `ecs` (the install script does).
ECS_POSTINST = """#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
exit 0
"""
ECS_PRERM = """#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop ecs >/dev/null 2>&1 || true
fi
exit 0
"""
ECS_POSTRM = """#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
exit 0
"""

SSM_CONFIG_TEMPLATE = {
    "Agent": {"Region": "", "OrchestrationRootDir": "", "ContainerMode": False},
    "Profile": {
        "ShareCreds": True,
        "ShareProfile": "",
        "ForceUpdateCreds": False,
        "KeyAutoRotateDays": 0,
    },
    "Ssm": {"Endpoint": "", "HealthFrequencyMinutes": 5},
}
SSM_LAB_CONFIG = {
    "_comment": "anywhere-agent LAB DOUBLE settings; the real SSM agent has no such file",
    "retry_max_seconds": 30,
    "http_timeout_seconds": 10,
}
ECS_LAB_CONFIG = {
    "_comment": "anywhere-agent LAB DOUBLE settings; the real ECS agent has no such file",
    "credentials_reread_seconds": 5,
    "http_timeout_seconds": 10,
    "retry_max_seconds": 15,
    "introspection_port": 51678,
    "tasks": [],
}


@dataclass(frozen=True)
class RepoInfo:
    """What build_repos made; paths are absolute, `packages` maps (name, arch) to the .deb."""

    out_dir: Path
    apt_dir: Path
    s3_dir: Path
    public_key: Path
    key_fingerprint: str
    ssm_version: str
    ecs_version: str
    regions: tuple[str, ...]
    packages: dict[tuple[str, str], Path] = field(default_factory=dict)
    # (name, arch, upstream version) -> .deb, every version served (`packages` is the latest).
    versions: dict[tuple[str, str, str], Path] = field(default_factory=dict)
    s3_files: tuple[str, ...] = ()
    rebuilt: bool = True

    def apt_source_line(self, base_url: str) -> str:
        return f"deb [trusted=yes] {base_url.rstrip('/')}/apt ./\n"


def _need_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pkgs = " ".join(sorted({TOOLS[t] for t in missing}))
        raise LabError(
            f"building the lab packages needs {', '.join(missing)}",
            f"install them: apt-get install -y {pkgs}",
        )


def _run(argv: Sequence[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, check=False, timeout=300
    )
    if proc.returncode != 0:
        raise LabError(
            f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[:500]}",
            "see the message above; the lab package build runs dpkg-deb and gpg",
        )
    return proc


def _inputs_digest(regions: Sequence[str], fingerprint: str) -> str:
    digest = hashlib.sha256()
    for name in ("ssm_agent.py", "ecs_agent.py", "packaging.py"):
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    digest.update(
        json.dumps(
            [SSM_VERSIONS, ECS_VERSIONS, DEB_REVISION, list(ARCHES), list(regions), fingerprint,
             list(EXEC_BINARY_VERSIONS)]
        ).encode()
    )
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Signing key


def _gpg(home: Path, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return _run(
        ["gpg", "--homedir", _short(home), "--batch", "--yes", "--no-tty", *args], input_text
    )


_SHORT_HOMES: dict[Path, str] = {}


def _short(home: Path) -> str:
    """A short path to `home` for gpg.

    Without /run/user/UID, gpg-agent puts its socket in the home dir and a Unix socket path may
    not exceed 107 bytes, so a long home is used through a symlink in a short temp dir.
    """
    if len(str(home)) < 60:
        return str(home)
    if home not in _SHORT_HOMES:
        link = Path(tempfile.mkdtemp(prefix="alg-")) / "g"
        link.symlink_to(home)
        _SHORT_HOMES[home] = str(link)
    return _SHORT_HOMES[home]


def ensure_signing_key(home: Path) -> str:
    """Create the lab key in `home` once; return its fingerprint."""
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    fpr = _fingerprint(home)
    if fpr:
        return fpr
    LOG.info("generating the lab package signing key in %s", home)
    # No passphrase: it is a throwaway lab key. ed25519 is instant to generate and gpg >= 2.1
    # (every Debian since stretch) verifies it.
    _gpg(
        home,
        "--passphrase",
        "",
        "--pinentry-mode",
        "loopback",
        "--quick-generate-key",
        KEY_UID,
        "ed25519",
        "sign",
        "never",
    )
    fpr = _fingerprint(home)
    if not fpr:
        raise LabError("gpg made no lab signing key", f"check the GnuPG home {home}")
    return fpr


def _fingerprint(home: Path) -> str:
    if not (home / "pubring.kbx").exists() and not (home / "pubring.gpg").exists():
        return ""
    out = _gpg(home, "--with-colons", "--list-secret-keys").stdout
    for line in out.splitlines():
        parts = line.split(":")
        if parts[0] == "fpr":
            return parts[9]
    return ""


def _stop_agent(home: Path) -> None:
    # gpg starts a gpg-agent for the home dir; stop the one we caused so no process lingers.
    subprocess.run(
        ["gpgconf", "--homedir", _short(home), "--kill", "gpg-agent"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    link = _SHORT_HOMES.pop(home, None)
    if link is not None:
        shutil.rmtree(Path(link).parent, ignore_errors=True)


def _detach_sign(home: Path, fpr: str, target: Path, sig: Path) -> None:
    _gpg(home, "--local-user", fpr, "--armor", "--detach-sign", "--output", str(sig), str(target))


# ---------------------------------------------------------------------------------------------
# Debs


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def _control(
    package: str, version: str, arch: str, depends: str, description: str, extra: str = ""
) -> str:
    return (
        f"Package: {package}\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: anywhere-agent lab <lab@anywhere-agent.invalid>\n"
        f"Section: admin\nPriority: optional\nDepends: {depends}\n{extra}"
        f"Homepage: https://github.com/aws\nDescription: {description}\n"
    )


def _build_deb(stage: Path, out: Path) -> None:
    for d in [stage, *stage.rglob("*")]:
        if d.is_dir():
            os.chmod(d, 0o755)  # noqa: S103 - package directories are world-readable by policy
    _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(stage), str(out)])


def versioned_double(name: str, version: str) -> bytes:
    """The double's script with its version constant set to `version`."""
    text = (HERE / name).read_text(encoding="utf-8")
    current = SSM_VERSION if name == "ssm_agent.py" else ECS_VERSION
    line = _VERSION_LINES[name]
    if text.count(line.format(current)) != 1:
        raise LabError(f"{name} does not hold {line.format(current)!r} exactly once",
                       "keep packaging.SSM_VERSION/ECS_VERSION equal to the doubles' constants")
    return text.replace(line.format(current), line.format(version)).encode("utf-8")


def build_ssm_deb(arch: str, work: Path, out_dir: Path, upstream: str = SSM_VERSION) -> Path:
    version = f"{upstream}-{DEB_REVISION}"
    stage = work / f"ssm-{arch}-{upstream}"
    _write(stage / "usr/bin/amazon-ssm-agent", versioned_double("ssm_agent.py", upstream), 0o755)
    # The real package ships the two workers beside the agent; ECS Exec copies all three.
    for worker in EXEC_WORKERS:
        _write(stage / "usr/bin" / worker, exec_stand_in(worker, upstream), 0o755)
    _write(stage / "lib/systemd/system/amazon-ssm-agent.service", SSM_UNIT)
    _write(
        stage / "etc/amazon/ssm/amazon-ssm-agent.json.template",
        json.dumps(SSM_CONFIG_TEMPLATE, indent=4) + "\n",
    )
    _write(stage / "etc/amazon/ssm/lab-double.json", json.dumps(SSM_LAB_CONFIG, indent=2) + "\n")
    _write(
        stage / "usr/share/doc/amazon-ssm-agent/README.lab",
        "This package is an anywhere-agent LAB DOUBLE of amazon-ssm-agent, not the AWS agent.\n",
    )
    (stage / "var/lib/amazon/ssm").mkdir(parents=True, exist_ok=True)
    _write(
        stage / "DEBIAN/control",
        _control(
            "amazon-ssm-agent",
            version,
            arch,
            "python3 (>= 3.9)",
            "LAB DOUBLE of the Amazon SSM Agent (anywhere-agent lab only)\n"
            " A stdlib-only Python stand-in that honours amazon-ssm-agent's command line,\n"
            " files and wire calls for the anywhere-agent lab. It is not the AWS agent.",
            extra="Recommends: openssl\n",
        ),
    )
    _write(
        stage / "DEBIAN/conffiles",
        "/etc/amazon/ssm/amazon-ssm-agent.json.template\n/etc/amazon/ssm/lab-double.json\n",
    )
    _write(stage / "DEBIAN/preinst", SSM_PREINST, 0o755)
    _write(stage / "DEBIAN/postinst", SSM_POSTINST, 0o755)
    _write(stage / "DEBIAN/prerm", SSM_PRERM, 0o755)
    out = out_dir / f"amazon-ssm-agent_{version}_{arch}.deb"
    _build_deb(stage, out)
    return out


def build_ecs_deb(arch: str, work: Path, out_dir: Path, upstream: str = ECS_VERSION) -> Path:
    version = f"{upstream}-{DEB_REVISION}"
    stage = work / f"ecs-{arch}-{upstream}"
    _write(stage / "usr/libexec/amazon-ecs-init", versioned_double("ecs_agent.py", upstream),
           0o755)
    _write(stage / "lib/systemd/system/ecs.service", ECS_UNIT)
    _write(stage / "etc/ecs/lab-double.json", json.dumps(ECS_LAB_CONFIG, indent=2) + "\n")
    _write(
        stage / "usr/share/doc/amazon-ecs-init/README.lab",
        "This package is an anywhere-agent LAB DOUBLE of amazon-ecs-init, not the AWS agent.\n",
    )
    for d in ("etc/ecs", "var/log/ecs", "var/lib/ecs/data", "var/cache/ecs"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    # The real package also Depends on docker-ce | docker.io; lab hosts with
    # docker_source = none have no Docker, so the double leaves that out.
    _write(
        stage / "DEBIAN/control",
        _control(
            "amazon-ecs-init",
            version,
            arch,
            "python3 (>= 3.9), systemd",
            "LAB DOUBLE of amazon-ecs-init and the ECS agent (anywhere-agent lab only)\n"
            " A stdlib-only Python stand-in that honours ecs-init's actions, the agent's\n"
            " config files, registration call and introspection API for the anywhere-agent\n"
            " lab. With a Docker daemon it runs lab tasks as containers. It is not the AWS agent.",
        ),
    )
    _write(stage / "DEBIAN/conffiles", "/etc/ecs/lab-double.json\n")
    _write(stage / "DEBIAN/postinst", ECS_POSTINST, 0o755)
    _write(stage / "DEBIAN/prerm", ECS_PRERM, 0o755)
    _write(stage / "DEBIAN/postrm", ECS_POSTRM, 0o755)
    out = out_dir / f"amazon-ecs-init_{version}_{arch}.deb"
    _build_deb(stage, out)
    return out


# ---------------------------------------------------------------------------------------------
# apt repo


def _package_stanza(deb: Path, rel: str) -> str:
    control = _run(["dpkg-deb", "-f", str(deb)]).stdout.strip()
    data = deb.read_bytes()
    return (
        f"{control}\nFilename: {rel}\nSize: {len(data)}\n"
        f"MD5sum: {hashlib.md5(data).hexdigest()}\n"  # noqa: S324 - apt index field, not security
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
    )


def write_apt_repo(apt_dir: Path, debs: Sequence[Path], home: Path, fpr: str) -> None:
    stanzas = [_package_stanza(d, f"./{d.name}") for d in sorted(debs)]
    packages = "\n".join(stanzas).encode()
    _write(apt_dir / "Packages", packages)
    _write(apt_dir / "Packages.gz", gzip.compress(packages, mtime=0))
    lines = [
        "Origin: anywhere-agent-lab",
        "Label: anywhere-agent lab doubles (not AWS packages)",
        "Suite: lab",
        "Codename: lab",
        f"Date: {formatdate(usegmt=True)}",
        f"Architectures: {' '.join(ARCHES)} all",
        "Description: anywhere-agent LAB DOUBLES of amazon-ssm-agent and amazon-ecs-init",
    ]
    for algo, name in ((hashlib.md5, "MD5Sum"), (hashlib.sha256, "SHA256")):
        lines.append(f"{name}:")
        for fname in ("Packages", "Packages.gz"):
            blob = (apt_dir / fname).read_bytes()
            lines.append(f" {algo(blob).hexdigest()} {len(blob):>8} {fname}")
    _write(apt_dir / "Release", "\n".join(lines) + "\n")
    _gpg(
        home,
        "--local-user",
        fpr,
        "--armor",
        "--detach-sign",
        "--output",
        str(apt_dir / "Release.gpg"),
        str(apt_dir / "Release"),
    )
    _gpg(
        home,
        "--local-user",
        fpr,
        "--clearsign",
        "--output",
        str(apt_dir / "InRelease"),
        str(apt_dir / "Release"),
    )


# ---------------------------------------------------------------------------------------------
# S3 layout of ecs-anywhere-install.sh


def s3_layout(regions: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """Map each S3 key (bucket/key) to (package, arch, signature suffix)."""
    return {key: value[:3] for key, value in s3_versions(regions).items()}


def s3_versions(regions: Sequence[str]) -> dict[str, tuple[str, str, str, str]]:
    """Each S3 key -> (package, arch, signature suffix, upstream version it serves).

    ecs-anywhere-install.sh names ecs-init `amazon-ecs-init-<VERSION>.<arch>.deb` with
    VERSION `latest` or a package version with its revision (`--ecs-version`); the SSM agent's
    version is a directory, `<version>/debian_<arch>/` beside `latest/`.
    """
    out: dict[str, tuple[str, str, str, str]] = {}
    for region in regions:
        for arch in ARCHES:
            for ver, upstream in (("latest", ECS_VERSIONS[-1]),
                                  *((f"{v}-{DEB_REVISION}", v) for v in ECS_VERSIONS)):
                out[f"amazon-ecs-agent-{region}/amazon-ecs-init-{ver}.{arch}.deb"] = (
                    "amazon-ecs-init", arch, ".asc", upstream)
            for ver, upstream in (("latest", SSM_VERSIONS[-1]),
                                  *((v, v) for v in SSM_VERSIONS)):
                out[f"amazon-ssm-{region}/{ver}/debian_{arch}/amazon-ssm-agent.deb"] = (
                    "amazon-ssm-agent", arch, ".sig", upstream)
    return out


# ECS Exec's binaries tarball (amazon-ssm-agent-binaries.tar.gz): AWS serves it per SSM agent
# version; the lab serves the version AWS's install script pins and the double's own version.
EXEC_WORKERS = ("ssm-agent-worker", "ssm-session-worker")
EXEC_BINARY_VERSIONS = (ecs_exec.SSM_BINARIES_VERSION, SSM_VERSION)


def exec_stand_in(name: str, version: str) -> str:
    """A LAB stand-in for one ECS Exec binary: it names itself and its version, and refuses
    to open sessions (the lab has no Session Manager channel)."""
    return (f"#!/bin/sh\n# LAB STAND-IN for {name} {version} (anywhere-agent lab, not AWS's).\n"
            f'case "$1" in -version|--version|version) echo "{name} version: {version}";'
            " exit 0;; esac\n"
            f'echo "{name}: anywhere-agent lab stand-in; no sessions in the lab" >&2\nexit 1\n')


def exec_tarball(version: str) -> bytes:
    """amazon-ssm-agent-binaries.tar.gz as AWS lays it out: the three binaries at the top,
    0755; deterministic (mtime 0, root owner) so rebuilds compare equal."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for name in ("amazon-ssm-agent", *EXEC_WORKERS):
            data = exec_stand_in(name, version).encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def exec_layout(regions: Sequence[str]) -> dict[str, str]:
    """S3 key (bucket/key) of each binaries tarball -> its version."""
    return {ecs_exec.tarball_key(region, arch, version): version
            for region in regions for arch in ARCHES for version in EXEC_BINARY_VERSIONS}


def build_repos(
    out_dir: Path, signing_home: Path | None = None, regions: Sequence[str] = DEFAULT_REGIONS
) -> RepoInfo:
    """Build (or reuse, when inputs are unchanged) the apt repo and S3 layout under out_dir.

    signing_home defaults to `<out_dir's parent>/anywhere-lab-signing-gnupg`: outside out_dir,
    because out_dir is served over HTTP and the private key must not be, and shared by
    successive builds so the lab key is generated once.
    """
    _need_tools()
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    home = (signing_home or out_dir.parent / "anywhere-lab-signing-gnupg").resolve()
    try:
        fpr = ensure_signing_key(home)
        regions = tuple(regions)
        digest = _inputs_digest(regions, fpr)
        info = _expected(out_dir, fpr, regions)
        stamp = out_dir / STAMP
        if stamp.exists() and stamp.read_text().strip() == digest and _complete(info):
            LOG.info("lab package repos in %s are up to date", out_dir)
            return RepoInfo(**{**info.__dict__, "rebuilt": False})
        _build(out_dir, home, fpr, info)
        stamp.write_text(digest + "\n")
        return info
    finally:
        _stop_agent(home)


def _expected(out_dir: Path, fpr: str, regions: tuple[str, ...]) -> RepoInfo:
    apt = out_dir / "apt"
    packages = {}
    versions = {}
    for arch in ARCHES:
        for name, served in (("amazon-ssm-agent", SSM_VERSIONS), ("amazon-ecs-init", ECS_VERSIONS)):
            for upstream in served:
                versions[(name, arch, upstream)] = (
                    apt / f"{name}_{upstream}-{DEB_REVISION}_{arch}.deb")
            packages[(name, arch)] = versions[(name, arch, served[-1])]
    return RepoInfo(
        out_dir=out_dir,
        apt_dir=apt,
        s3_dir=out_dir / "s3",
        public_key=out_dir / "keys" / "anywhere-lab-signing.asc",
        key_fingerprint=fpr,
        ssm_version=SSM_VERSION,
        ecs_version=ECS_VERSION,
        regions=regions,
        packages=packages,
        versions=versions,
        s3_files=tuple(sorted([*s3_layout(regions), *exec_layout(regions)])),
    )


def _complete(info: RepoInfo) -> bool:
    files = [
        *info.versions.values(),
        info.public_key,
        info.apt_dir / "Packages",
        info.apt_dir / "Release",
        info.apt_dir / "InRelease",
    ]
    for key, (_, _, suffix) in s3_layout(info.regions).items():
        files += [info.s3_dir / key, info.s3_dir / (key + suffix)]
    files += [info.s3_dir / key for key in exec_layout(info.regions)]
    return all(f.exists() for f in files)


def _build(out_dir: Path, home: Path, fpr: str, info: RepoInfo) -> None:
    LOG.info("building lab package repos in %s", out_dir)
    for sub in ("apt", "s3", "github", "keys"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    info.apt_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="anywhere-lab-debs-") as tmp:
        for arch in ARCHES:
            for upstream in SSM_VERSIONS:
                build_ssm_deb(arch, Path(tmp), info.apt_dir, upstream)
            for upstream in ECS_VERSIONS:
                build_ecs_deb(arch, Path(tmp), info.apt_dir, upstream)
    write_apt_repo(info.apt_dir, list(info.versions.values()), home, fpr)
    for key, (package, arch, suffix, upstream) in s3_versions(info.regions).items():
        target = info.s3_dir / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(info.versions[(package, arch, upstream)], target)
        _detach_sign(home, fpr, target, target.with_name(target.name + suffix))
    for key, version in exec_layout(info.regions).items():
        _write(info.s3_dir / key, exec_tarball(version))
    public = _gpg(home, "--armor", "--export", fpr).stdout
    _write(info.public_key, public)
    scripts = out_dir / "github/aws/amazon-ecs-agent/master/scripts"
    for name in ("amazon-ecs-agent.gpg", "amazon-ssm-agent.gpg"):
        _write(scripts / name, public)
