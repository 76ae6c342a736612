"""Local preflight checks: each reads the host through `ctx.host` and returns a CheckResult.

Thresholds:
- disk: free space on the filesystems holding /var/lib (Docker images, ECS and SSM state)
  and /var (logs): fail under 1 GiB (the agent packages, the ECS agent image and Docker
  need several hundred MiB to install at all), warn under 2 GiB (room for a first task).
- memory: warn under 1 GiB total RAM (the agents and Docker run before any task does);
  never a failure, since small hosts do work with small tasks.
- time sync: warn when `timedatectl` says the clock is not NTP-synchronised or cannot tell;
  AWS rejects SigV4 requests signed more than 5 minutes off, but a clock may still be right.
- registration findings are warnings only: `install` re-registers, preflight just reports.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from anywhere_agent.errors import HostIOError, PreflightError
from anywhere_agent.host import agent_files
from anywhere_agent.host.platform import detect, read_os_release
from anywhere_agent.preflight.context import PreflightContext
from anywhere_agent.preflight.model import CheckResult, Verdict, worst_verdict

GIB = 1024**3
DISK_PATHS = ("/var/lib", "/var")
DISK_FAIL_BYTES = 1 * GIB
DISK_WARN_BYTES = 2 * GIB
MEMORY_WARN_BYTES = 1 * GIB
WRITABLE_DIRS = ("/etc", "/var/lib", "/etc/systemd/system")
# Every variable botocore or a Go SDK would take credentials from before the shared file.
CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)
_CGROUP = "/sys/fs/cgroup"
_CGROUP_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpu,cpuacct", "pids", "blkio")
_REREGISTER_FIX = ("nothing to do now: `anywhere-agent install` with a fresh activation "
                   "re-registers this host and reports the old identity")


def check_root(ctx: PreflightContext) -> CheckResult:
    if ctx.euid == 0:
        return CheckResult("root", "pass", "running as root")
    return CheckResult("root", "fail", f"running as uid {ctx.euid}, not root",
                       "run it as root: sudo anywhere-agent ...")


def check_systemd(ctx: PreflightContext) -> CheckResult:
    if ctx.host.exists("/run/systemd/system"):
        return CheckResult("systemd", "pass", "systemd is the init system")
    return CheckResult(
        "systemd", "fail", "/run/systemd/system is missing: systemd is not running as init",
        "use a host booted with systemd; the SSM agent, Docker and ecs run as systemd units",
    )


def check_platform(ctx: PreflightContext) -> CheckResult:
    text = read_os_release(ctx.host)
    if text is None:
        return CheckResult("platform", "fail", "no /etc/os-release: cannot tell the distribution",
                           "restore /etc/os-release (package base-files / *-release)")
    try:
        plat = detect(text, ctx.machine)
    except PreflightError as err:
        return CheckResult("platform", "fail", err.message, err.fix)
    name = plat.pretty_name or f"{plat.distro} {plat.version}".strip()
    return CheckResult("platform", "pass",
                       f"{name}, {plat.machine} ({plat.arch}), {plat.package_manager}")


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _nearest_existing(path: Path, root: Path) -> Path:
    while not path.exists() and path != root and path != path.parent:
        path = path.parent
    return path


def check_disk(ctx: PreflightContext) -> CheckResult:
    statuses: list[Verdict] = []
    parts = []
    for node_path in DISK_PATHS:
        local = _nearest_existing(ctx.host.path(node_path), ctx.host.root)
        try:
            free = ctx.disk_free(local)
        except OSError as err:
            statuses.append("warn")
            parts.append(f"{node_path}: cannot measure ({err.strerror})")
            continue
        statuses.append("fail" if free < DISK_FAIL_BYTES
                        else "warn" if free < DISK_WARN_BYTES else "pass")
        parts.append(f"{node_path} {_gib(free)} free")
    status = worst_verdict(statuses)
    fix = ""
    if status != "pass":
        fix = (f"free space under /var/lib and /var (Docker images land in /var/lib/docker): "
               f"at least {_gib(DISK_WARN_BYTES)} recommended, {_gib(DISK_FAIL_BYTES)} minimum")
    return CheckResult("disk", status, ", ".join(parts), fix)


def check_memory(ctx: PreflightContext) -> CheckResult:
    total = ctx.memory_total()
    if total >= MEMORY_WARN_BYTES:
        return CheckResult("memory", "pass", f"{_gib(total)} RAM")
    return CheckResult(
        "memory", "warn", f"only {_gib(total)} RAM",
        f"give the host at least {_gib(MEMORY_WARN_BYTES)}: the SSM agent, Docker and the "
        "ECS agent need memory before any task runs",
    )


def check_time_sync(ctx: PreflightContext) -> CheckResult:
    res = ctx.host.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], timeout=10)
    answer = res.stdout.strip() if res.ok else ""
    fix = ("enable time sync (timedatectl set-ntp true, or chronyd/ntpd): AWS rejects "
           "requests signed with a clock more than 5 minutes off")
    if answer == "yes":
        return CheckResult("time_sync", "pass", "clock is NTP-synchronised")
    if answer == "no":
        return CheckResult("time_sync", "warn", "clock is not NTP-synchronised", fix)
    return CheckResult("time_sync", "warn",
                       f"cannot tell whether the clock is synchronised ({res.last_line()})", fix)


# Units install starts; a mask (a unit file that is a symlink to /dev/null, or empty, in
# /etc/systemd/system or /run/systemd/system) would only show when install starts them.
MASKABLE_UNITS = ("amazon-ssm-agent", "docker", "ecs")
_MASK_DIRS = ("/etc/systemd/system", "/run/systemd/system")


def _masked(ctx: PreflightContext, unit: str) -> str:
    """The node path of the mask for `unit`, or ""."""
    for directory in _MASK_DIRS:
        node_path = f"{directory}/{unit}.service"
        path = ctx.host.path(node_path)
        try:
            if path.is_symlink() and os.readlink(path) == "/dev/null":
                return node_path
            if path.is_file() and path.stat().st_size == 0:
                return node_path
        except OSError:
            continue
    return ""


def check_masked_units(ctx: PreflightContext) -> CheckResult:
    masked = {u: where for u in MASKABLE_UNITS if (where := _masked(ctx, u))}
    if not masked:
        return CheckResult("masked_units", "pass",
                           f"none of {', '.join(MASKABLE_UNITS)} is masked")
    names = " ".join(f"{u}.service" for u in masked)
    return CheckResult("masked_units", "fail",
                       f"masked: {', '.join(f'{u} ({w})' for u, w in masked.items())}; install "
                       "could not start them", f"systemctl unmask {names}")


def check_cgroup(ctx: PreflightContext) -> CheckResult:
    host = ctx.host
    if host.exists(f"{_CGROUP}/cgroup.controllers"):
        return CheckResult("cgroup", "pass", "cgroup v2 (unified) mounted at /sys/fs/cgroup")
    if any(host.exists(f"{_CGROUP}/{c}") for c in _CGROUP_V1_CONTROLLERS):
        hybrid = " (hybrid, v2 at /sys/fs/cgroup/unified)" if host.exists(
            f"{_CGROUP}/unified") else ""
        return CheckResult("cgroup", "pass", f"cgroup v1 mounted at /sys/fs/cgroup{hybrid}")
    return CheckResult(
        "cgroup", "fail", "no cgroup hierarchy at /sys/fs/cgroup",
        "boot with cgroups mounted at /sys/fs/cgroup (systemd does this); Docker and the "
        "ECS agent need them",
    )


def _writable_check(node_dir: str) -> Callable[[PreflightContext], CheckResult]:
    name = "writable_" + node_dir.strip("/").replace("/", "_")

    def check(ctx: PreflightContext) -> CheckResult:
        try:
            ctx.host.check_writable(node_dir)
        except HostIOError as err:
            return CheckResult(name, "fail", err.message, err.fix)
        return CheckResult(name, "pass", f"{node_dir} is writable")

    check.__name__ = f"check_{name}"
    return check


def check_credentials_env(ctx: PreflightContext) -> CheckResult:
    found = [name for name in CREDENTIAL_ENV if ctx.env.get(name)]
    if not found:
        return CheckResult("credentials_env", "pass", "no AWS credential variables set")
    # Names only: the values are secrets.
    return CheckResult(
        "credentials_env", "fail", f"credential variables set: {', '.join(found)}",
        f"unset {' '.join(found)} before running: the agents must use only the role "
        "credentials the SSM agent vends (aws/amazon-ecs-agent#3604)",
    )


def _managed_instance_id(ctx: PreflightContext) -> str:
    reg = agent_files.registration(ctx.host)
    return reg.instance_id if reg else ""


def check_credentials_file(ctx: PreflightContext) -> CheckResult:
    name, path = "credentials_file", agent_files.HOST_CREDENTIALS
    found = agent_files.credentials_file(ctx.host)
    if found is None:
        return CheckResult(name, "pass", f"no {path} (the SSM agent writes it)")
    move_aside = (f"move it aside (mv {path} {path}.bak): the ECS agent "
                  "reads its default profile, which belongs to the SSM agent "
                  "(aws/amazon-ecs-agent#3604)")
    if found.malformed:
        return CheckResult(name, "fail", f"{path} exists and is not an INI file",
                           move_aside)
    profiles = list(found.profiles)
    mi = _managed_instance_id(ctx)
    if not mi:
        return CheckResult(name, "fail",
                           f"{path} exists but this host has no SSM registration, "
                           "so the SSM agent did not write it", move_aside)
    # The SSM agent writes temporary role credentials: a default without a session token
    # holds someone's long-term keys.
    if not found.profiles.get("default", {}).get("aws_session_token"):
        return CheckResult(name, "fail",
                           f"the default profile in {path} is not SSM role "
                           "credentials (no session token)", move_aside)
    others = [p for p in profiles if p != "default"]
    if others:
        return CheckResult(
            name, "warn", f"{path} has profiles besides default: {', '.join(others)}",
            "move them to your own file (AWS_SHARED_CREDENTIALS_FILE): the SSM agent rewrites "
            "this one every ~30 minutes",
        )
    return CheckResult(name, "pass", f"{path} holds the SSM agent's credentials "
                                     f"for {mi}")


def check_registration(ctx: PreflightContext) -> CheckResult:
    """Report an existing registration and anything that makes it suspect; never fails."""
    findings: list[tuple[Verdict, str]] = []
    reg = agent_files.registration(ctx.host)
    mi = ""
    if reg is None:
        findings.append(("pass", "not registered with SSM yet"))
    else:
        mi, region = reg.instance_id, reg.region
        if not mi:
            findings.append(("warn", f"{agent_files.SSM_REGISTRATION} has no ManagedInstanceID"))
        else:
            findings.append(("pass", f"registered as {mi} in {region or 'an unknown region'}"))
        if region and ctx.cfg.region and region != ctx.cfg.region:
            findings.append(("warn", f"registered in {region} but region is {ctx.cfg.region}"))
    key_id = agent_files.registration_key_instance(ctx.host)
    if key_id is not None:
        if not key_id:
            findings.append(("warn", "RegistrationKey has an empty instanceID "
                                     "(an earlier registration was interrupted)"))
        elif mi and key_id != mi:
            findings.append(("warn", f"RegistrationKey names {key_id}, registration {mi}"))
    try:
        state = agent_files.read_state(ctx.host) or {}
    except ValueError:
        state = {}
    identity = state.get("identity")
    recorded = identity.get("machine_id") if isinstance(identity, dict) else ""
    current = agent_files.machine_id(ctx.host)
    if isinstance(recorded, str) and recorded and current and recorded != current:
        findings.append(("warn", "machine-id differs from the one recorded at registration "
                                 "(cloned host?)"))
    status = worst_verdict([s for s, _ in findings])
    return CheckResult("registration", status, "; ".join(t for _, t in findings),
                       _REREGISTER_FIX if status == "warn" else "")


WRITABLE_CHECKS = tuple(_writable_check(d) for d in WRITABLE_DIRS)
