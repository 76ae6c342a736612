"""Lab hosts: one host's record, its overlay root and files; exec, ssh and faults on it."""

from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anywhere_agent.errors import LabError
from anywhere_agent.lab import system
from anywhere_agent.lab.system import ProcessRef

LOG = logging.getLogger(__name__)

SSH_PORT = 22
LAB_APT_LIST = "etc/apt/sources.list.d/anywhere-lab.list"
DEBIAN_APT_LIST = "etc/apt/sources.list.d/anywhere-lab-debian.list"
JOURNALD_DROPIN = "etc/systemd/journald.conf.d/anywhere-lab.conf"
# journald sizes a journal file's hash tables from its largest allowed size (by default 1/8 of
# 10% of the file system, capped at 128 MiB: the build machine's disk) and writes them at
# once: ~3.6 MiB of page cache mapped by each host's journald. 8 MiB files, as on a small
# disk, keep that near 0.2 MiB; entries still rotate into archived files and stay readable.
JOURNALD_CONF = (
    "# anywhere-agent lab: small journal files keep each idle host's memory small\n"
    "[Journal]\nSystemMaxFileSize=8M\n"
)
FAULT_DIR = "/run/anywhere-lab/faults"
HOST_FAULTS = ("ecs-hang", "ecs-crash", "ssm-stale")


def ssh_options(key: Path, connect_timeout: int = 5) -> list[str]:
    """ssh options for lab hosts: they are rebuilt often, so host keys are never remembered."""
    return [
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        "-o",
        "LogLevel=ERROR",
    ]


@dataclass(frozen=True)
class LabHost:
    """One lab host as the state file records it."""

    lab: str
    name: str
    ip: str
    netns: str
    dir: Path
    key: Path
    nspawn: ProcessRef | None = None
    leader: ProcessRef | None = None

    @property
    def machine(self) -> str:
        return f"{self.lab}-{self.name}"

    @property
    def merged(self) -> Path:
        return self.dir / "root"

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def log(self) -> Path:
        return self.dir / "console.log"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ip": self.ip,
            "netns": self.netns,
            "machine": self.machine,
            "dir": str(self.dir),
            "nspawn": self.nspawn.to_dict() if self.nspawn else None,
            "leader": self.leader.to_dict() if self.leader else None,
        }

    @classmethod
    def from_dict(cls, lab: str, key: Path, data: Mapping[str, Any]) -> LabHost:
        return cls(
            lab=lab,
            name=str(data["name"]),
            ip=str(data["ip"]),
            netns=str(data["netns"]),
            dir=Path(str(data["dir"])),
            key=key,
            nspawn=ProcessRef.from_dict(data["nspawn"]) if data.get("nspawn") else None,
            leader=ProcessRef.from_dict(data["leader"]) if data.get("leader") else None,
        )


# -- preparing the root ------------------------------------------------------------------


def render_files(
    host: LabHost, gateway: str, pubkey: str, debian_sources: str = ""
) -> dict[str, tuple[str, int]]:
    """Per-host files relative to the root: {path: (content, mode)}; pure.

    `debian_sources` are the deb lines of the lab's Debian proxy (aptcache.Upstream), so a
    host installs distribution packages (docker.io) as a customer's server does.
    """
    hostname = host.machine
    files = {
        "etc/hostname": (hostname + "\n", 0o644),
        "etc/hosts": (
            "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{host.ip}\t{hostname} {host.name}\n"
            f"{gateway}\tlab-gateway\n",
            0o644,
        ),
        "etc/machine-id": (uuid.uuid4().hex + "\n", 0o444),
        "root/.ssh/authorized_keys": (pubkey.strip() + "\n", 0o600),
        LAB_APT_LIST: (f"deb [trusted=yes] http://{gateway}:8080/apt ./\n", 0o644),
        JOURNALD_DROPIN: (JOURNALD_CONF, 0o644),
    }
    if debian_sources:
        files[DEBIAN_APT_LIST] = (
            "# anywhere-agent lab: Debian through the lab's caching proxy\n"
            + debian_sources.rstrip("\n") + "\n",
            0o644,
        )
    return files


def mount_root(host: LabHost, lowerdirs: str) -> None:
    for d in (host.upper, host.work, host.merged):
        d.mkdir(parents=True, exist_ok=True)
    if system.mounts_under(host.merged):
        return
    system.mount_overlay(
        lowerdirs, host.upper, host.work, host.merged, f"overlay mount for {host.name}"
    )


def write_files(host: LabHost, gateway: str, pubkey: str, debian_sources: str = "") -> None:
    root = host.merged
    files = render_files(host, gateway, pubkey, debian_sources)
    for rel, (content, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        tmp = path.with_name(path.name + ".lab-tmp")
        tmp.write_text(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    os.chmod(root / "root/.ssh", 0o700)
    ours = {Path(rel).name for rel in files if rel.startswith("etc/apt/sources.list.d/")}
    for extra in (root / "etc/apt/sources.list.d").iterdir():
        if extra.name not in ours:
            extra.unlink()  # the lab's repos are the only apt sources
    hostkey = root / "etc/ssh/ssh_host_ed25519_key"
    if not hostkey.exists():
        new_ssh_key(hostkey, f"root@{host.machine}", "ssh host key")


def new_ssh_key(path: Path, comment: str, what: str) -> None:
    """An ed25519 key pair without a passphrase at `path` (and `path`.pub)."""
    system.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        what=what,
    )


def sshd_answers(ip: str, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((ip, SSH_PORT), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


# -- talking to a host -------------------------------------------------------------------


def exec(
    host: LabHost,
    argv: Sequence[str],
    input: bytes | None = None,
    *,
    check: bool = True,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv inside the host with nsenter into all namespaces of its init."""
    if host.leader is None or not host.leader.alive():
        raise LabError(f"lab host {host.name} is not running", "anywhere-agent lab up")
    return system.run(
        ["nsenter", "-t", str(host.leader.pid), "-a", "--", *argv],
        input=input,
        check=check,
        timeout=timeout,
        env=system.HOST_ENV,
        what=f"{argv[0]} on {host.name}",
    )


def ssh(
    host: LabHost,
    argv: Sequence[str],
    input: bytes | None = None,
    *,
    check: bool = True,
    timeout: float = 300.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv on the host over ssh as root with the lab key, as an operator would."""
    # ssh hands the remote shell one string; quoting each argument keeps argv semantics.
    return system.run(
        ["ssh", *ssh_options(host.key), f"root@{host.ip}", "--", shlex.join(argv)],
        input=input,
        check=check,
        timeout=timeout,
        what=f"ssh {argv[0]} on {host.name}",
    )


def copy_in(host: LabHost, local: Path, remote: str, mode: int | None = None) -> None:
    """Copy a local file into the running host (through its namespaces, so /run and /tmp work)."""
    data = Path(local).read_bytes()
    parent = os.path.dirname(remote) or "/"
    exec(host, ["mkdir", "-p", parent])
    exec(host, ["dd", f"of={remote}", "status=none"], input=data)
    if mode is not None:
        exec(host, ["chmod", f"{mode:o}", remote])


def set_fault(host: LabHost, name: str, on: bool) -> None:
    if name not in HOST_FAULTS:
        raise LabError(f"unknown host fault {name!r}", f"use one of: {', '.join(HOST_FAULTS)}")
    path = f"{FAULT_DIR}/{name}"
    if on:
        exec(host, ["mkdir", "-p", FAULT_DIR])
        exec(host, ["touch", path])
    else:
        exec(host, ["rm", "-f", path])


def faults(host: LabHost) -> list[str]:
    proc = exec(host, ["ls", "-1", FAULT_DIR], check=False)
    return sorted(proc.stdout.decode().split()) if proc.returncode == 0 else []


# -- observing ---------------------------------------------------------------------------


def container_pids(leader: ProcessRef) -> list[int]:
    """All processes in the host's pid namespace (the leader's)."""
    try:
        want = os.readlink(f"/proc/{leader.pid}/ns/pid")
    except OSError:
        return []
    pids = []
    for pid in system.iter_pids():
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == want:
                pids.append(pid)
        except OSError:
            continue
    return pids


def memory(host: LabHost) -> dict[str, int]:
    """PSS and RSS (KiB) summed over the host's processes; PSS shares the common pages fairly."""
    if host.leader is None or not host.leader.alive():
        return {"processes": 0, "pss_kib": 0, "rss_kib": 0}
    pss = rss = 0
    pids = container_pids(host.leader)
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
            elif line.startswith("Rss:"):
                rss += int(line.split()[1])
    return {"processes": len(pids), "pss_kib": pss, "rss_kib": rss}


def system_state(host: LabHost) -> str:
    if host.leader is None or not host.leader.alive():
        return "stopped"
    proc = exec(host, ["systemctl", "is-system-running"], check=False, timeout=10)
    return proc.stdout.decode().strip() or "unknown"
