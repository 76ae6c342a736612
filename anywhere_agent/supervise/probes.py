"""Probes: each looks at one thing on the node and returns typed Checks (and facts it learned).

Every probe is cheap and bounded by a timeout, because the supervisor must keep petting the
systemd watchdog; none of them changes anything on the node.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Protocol

from anywhere_agent.config import Config
from anywhere_agent.errors import HostIOError
from anywhere_agent.health.model import Check, Status
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host
from anywhere_agent.supervise.clock import Clock

LOG = logging.getLogger(__name__)

REINSTALL_FIX = ("re-install with a new activation: anywhere-agent install "
                 "(the supervisor never re-registers on its own)")
DEREGISTERED_SUMMARY = (
    "SSM credentials are not rotating: the registration may have been removed centrally; "
    "run `anywhere-agent status` and re-install with a new activation if so")


@dataclass(frozen=True)
class Observation:
    checks: tuple[Check, ...]
    facts: Mapping[str, str] = field(default_factory=dict)


class Probe(Protocol):
    name: str
    interval: float

    def __call__(self) -> Observation: ...


def unit_check_name(unit: str) -> str:
    return "unit_" + re.sub(r"[^a-z0-9]+", "_", unit.lower()).strip("_")


# --- ECS introspection ---------------------------------------------------------------------

Fetch = Callable[[str, float], tuple[int, bytes]]
_MAX_ANSWER = 1 << 20


def _http10_get(sock: socket.socket, host: str, path: str) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET on a connected socket: the server closes after the answer.

    Hand-rolled on purpose: http.client pulls in ssl and email (several MiB of RSS in a
    daemon that must stay small) to talk to two loopback endpoints.
    """
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n"
                 "Connection: close\r\n\r\n".encode())
    chunks: list[bytes] = []
    size = 0
    while size <= _MAX_ANSWER:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ConnectionError("not an HTTP answer")
    return int(parts[1]), body


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET over TCP; no proxy variables apply (this is loopback)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    # An ASCII name as bytes: getaddrinfo would otherwise run a str through the idna codec,
    # which imports encodings.idna, stringprep and unicodedata into the daemon for good.
    # (getaddrinfo takes bytes; typeshed's create_connection says str only.)
    address: str | bytes = host.encode("ascii") if host.isascii() else host
    with socket.create_connection((address, parts.port or 80),  # type: ignore[arg-type]
                                  timeout=timeout) as sock:
        sock.settimeout(timeout)
        return _http10_get(sock, parts.netloc or host, parts.path or "/")


class IntrospectionProbe:
    """`/v1/metadata` answers in time, has a ContainerInstanceArn, and the cluster matches."""

    name = "ecs_introspection"

    def __init__(self, base_url: str, cluster: str, interval: float, timeout: float = 5.0,
                 fetch: Fetch = http_get) -> None:
        self.url = base_url.rstrip("/") + "/v1/metadata"
        self.cluster = cluster
        self.interval = interval
        self.timeout = timeout
        self._fetch = fetch
        # This round's answer (or the error it raised), for the ACS probe that runs after it.
        self._last: Optional[tuple[float, tuple[int, bytes] | OSError]] = None

    def _check(self, status: Status, summary: str, reason: str, fix: str = "",
               value: Optional[float] = None) -> Observation:
        return Observation((Check(self.name, status, summary, fix=fix, reason=reason,
                                  value=value, uom="s" if value is not None else ""),))

    def _ask(self) -> tuple[int, bytes]:
        try:
            answer: tuple[int, bytes] | OSError = self._fetch(self.url, self.timeout)
        except OSError as err:
            answer = err
        self._last = (time.monotonic(), answer)
        if isinstance(answer, OSError):
            raise answer
        return answer

    def recent(self, url: str, timeout: float) -> tuple[int, bytes]:
        """Fetch-shaped: the answer this probe got within the last half interval (the same
        round), else a fresh one; so a round asks the agent's introspection once."""
        if url == self.url and self._last is not None and \
                time.monotonic() - self._last[0] < self.interval / 2:
            answer = self._last[1]
            if isinstance(answer, OSError):
                raise answer
            return answer
        return self._fetch(url, timeout)

    def __call__(self) -> Observation:
        logs = "see journalctl -u ecs and /var/log/ecs/ecs-agent.log"
        try:
            code, body = self._ask()
        except OSError as err:
            what = "did not answer in time" if isinstance(err, TimeoutError) else \
                f"did not answer ({err.__class__.__name__}: {err})"
            return self._check(Status.CRITICAL, f"ECS agent at {self.url} {what}",
                               "no_answer", f"the supervisor restarts a hung agent; {logs}")
        if code != 200:
            return self._check(Status.CRITICAL, f"ECS agent answered HTTP {code}", "bad_answer",
                               logs)
        try:
            meta: Any = json.loads(body)
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except ValueError:
            return self._check(Status.CRITICAL, "ECS agent answered with invalid JSON",
                               "bad_answer", logs)
        arn = meta.get("ContainerInstanceArn") or ""
        cluster = str(meta.get("Cluster") or "")
        # The agent reports the cluster by name or ARN depending on version.
        cluster_name = cluster.rsplit("/", 1)[-1]
        if not arn:
            return self._check(Status.CRITICAL, "ECS agent runs but is not registered "
                               "(no ContainerInstanceArn)", "not_registered",
                               f"check credentials and cluster; {logs}")
        if cluster_name != self.cluster:
            return self._check(
                Status.CRITICAL, f"ECS agent is in cluster {cluster_name!r}, config says "
                f"{self.cluster!r}", "cluster_mismatch",
                "re-run anywhere-agent install with the intended --cluster")
        version = str(meta.get("Version") or "").replace("Amazon ECS Agent - ", "")
        return Observation(
            (Check(self.name, Status.OK,
                   f"registered in {cluster_name} as {arn.rsplit('/', 1)[-1]} ({version})"),),
            {"container_instance_arn": str(arn)})


# --- systemd units ---------------------------------------------------------------------------

class UnitProbe:
    """State of one systemd unit; a unit we do not manage is reported as skipped."""

    def __init__(self, host: Host, unit: str, interval: float, managed: bool = True,
                 unmanaged_reason: str = "") -> None:
        self.name = unit_check_name(unit)
        self.unit = unit
        self.interval = interval
        self.managed = managed
        self.unmanaged_reason = unmanaged_reason
        self._host = host

    def __call__(self) -> Observation:
        st = self._host.services.state(self.unit)
        unit = self.unit
        if not self.managed:
            seen = "not installed" if not st.exists else f"{st.active_state} but not managed"
            return Observation((Check(self.name, Status.UNKNOWN,
                                      f"{seen} ({self.unmanaged_reason})", skipped=True,
                                      reason="not_managed"),))
        restarts = float(st.n_restarts)
        if not st.exists:
            return Observation((Check(self.name, Status.CRITICAL, f"{unit} is not installed",
                                      fix="anywhere-agent install", reason="missing"),))
        if st.active_state == "active":
            return Observation((Check(self.name, Status.OK, f"{unit} is {st.sub_state}",
                                      value=restarts, reason="active"),))
        if st.active_state in ("activating", "reloading"):
            return Observation((Check(
                self.name, Status.WARNING, f"{unit} is {st.active_state} ({st.sub_state}), "
                f"{st.n_restarts} restarts", value=restarts, reason="activating",
                fix=f"if it persists: journalctl -u {unit}"),))
        if st.active_state == "failed":
            return Observation((Check(
                self.name, Status.CRITICAL, f"{unit} failed ({st.sub_state}) after "
                f"{st.n_restarts} restarts", value=restarts, reason="failed",
                fix=f"journalctl -u {unit}; then systemctl reset-failed {unit} && "
                f"systemctl start {unit}"),))
        fix = f"systemctl start {unit}" if st.enabled else f"systemctl enable --now {unit}"
        return Observation((Check(self.name, Status.CRITICAL,
                                  f"{unit} is {st.active_state} ({st.sub_state})",
                                  value=restarts, reason="inactive", fix=fix),))


# --- SSM registration and credentials --------------------------------------------------------

class RegistrationProbe:
    name = "ssm_registration"

    def __init__(self, host: Host, interval: float) -> None:
        self.interval = interval
        self._host = host

    def __call__(self) -> Observation:
        try:
            reg = agent_files.registration(self._host)
        except HostIOError as err:
            return Observation((Check(self.name, Status.UNKNOWN, err.message, fix=err.fix,
                                      reason="unreadable"),))
        if reg is None:
            return Observation((Check(self.name, Status.CRITICAL,
                                      f"not registered with SSM ({agent_files.SSM_REGISTRATION} "
                                      "missing)",
                                      fix=REINSTALL_FIX, reason="missing"),))
        instance_id, region = reg.instance_id, reg.region
        if not instance_id.startswith("mi-"):
            return Observation((Check(self.name, Status.CRITICAL,
                                      f"{agent_files.SSM_REGISTRATION} holds no mi- instance ID",
                                      fix=REINSTALL_FIX, reason="invalid"),))
        return Observation((Check(self.name, Status.OK, f"registered as {instance_id} in "
                                  f"{region or 'an unknown region'}", reason="registered"),),
                           {"instance_id": instance_id})


class CredentialsProbe:
    """The SSM agent's role credentials are rewritten regularly and have not expired.

    Tolerant by design: the age of the file is the signal (the agent rewrites it roughly
    every 15 minutes); an expiry is used only if the file records one. Secret values are
    never kept or logged.
    """

    name = "ssm_credentials"

    def __init__(self, host: Host, clock: Clock, interval: float,
                 warn_age: float = 1800.0, crit_age: float = 3600.0) -> None:
        self.interval = interval
        self.warn_age = warn_age
        self.crit_age = crit_age
        self._host = host
        self._clock = clock

    def __call__(self) -> Observation:
        now = self._clock.time()
        mtime = self._host.mtime(agent_files.HOST_CREDENTIALS)
        if mtime is None:
            return Observation((Check(
                self.name, Status.CRITICAL, "no SSM role credentials "
                f"({agent_files.HOST_CREDENTIALS} missing)", reason="missing",
                fix="check that amazon-ssm-agent runs and is registered (anywhere-agent status)"),))
        try:
            expiry = agent_files.parse_expiry(agent_files.credentials_expires_at(self._host))
        except HostIOError:
            expiry = None
        age = max(0.0, now - mtime)
        minutes = age / 60
        base = Check(self.name, Status.OK, "", value=round(age, 1), uom="s",
                     warn=self.warn_age, crit=self.crit_age)
        if expiry is not None and expiry <= now:
            return Observation((replace(
                base, status=Status.CRITICAL, reason="expired",
                summary=f"SSM role credentials expired {(now - expiry) / 60:.0f} min ago",
                fix="systemctl restart amazon-ssm-agent"),))
        if age >= self.warn_age:
            return Observation((replace(
                base, status=Status.CRITICAL if age >= self.crit_age else Status.WARNING,
                summary=f"SSM role credentials not rewritten for {minutes:.0f} min",
                reason="stale", fix="systemctl restart amazon-ssm-agent"),))
        return Observation((replace(base, reason="fresh",
                                    summary=f"SSM role credentials rewritten {minutes:.0f} "
                                    "min ago"),))


# --- resource pressure -----------------------------------------------------------------------

def _percent(used: float, total: float) -> float:
    return round(100.0 * used / total, 1) if total > 0 else 0.0


def _memory_percent(meminfo: str = "/proc/meminfo") -> float:
    """Memory in use as psutil's virtual_memory().percent computes it on Linux:
    (MemTotal - MemAvailable) / MemTotal. Read here rather than through psutil, which would
    keep ~1.3 MiB resident in the daemon for two numbers."""
    fields: dict[str, int] = {}
    with open(meminfo, encoding="ascii") as text:
        for line in text:
            key, _, rest = line.partition(":")
            if rest.split():
                fields[key] = int(rest.split()[0])
    total = fields.get("MemTotal", 0)
    # Kernels before 3.14 have no MemAvailable: free plus reclaimable page cache instead.
    available = fields.get("MemAvailable",
                           fields.get("MemFree", 0) + fields.get("Buffers", 0)
                           + fields.get("Cached", 0) + fields.get("SReclaimable", 0))
    return _percent(total - available, total)


class PressureProbe:
    """Disk and inode use of the node's filesystems, memory use and load per CPU."""

    name = "pressure"

    def __init__(self, host: Host, config: Config, interval: float,
                 paths: Sequence[str] = ("/", agent_files.DOCKER_DATA_DIR,
                                          agent_files.ECS_DATA_DIR),
                 memory_percent: Callable[[], float] = _memory_percent,
                 loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg,
                 cpu_count: Callable[[], Optional[int]] = os.cpu_count) -> None:
        self.interval = interval
        self._host = host
        self._cfg = config.supervise
        self._paths = paths
        self._memory_percent = memory_percent
        self._loadavg = loadavg
        self._cpu_count = cpu_count

    @staticmethod
    def _level(value: float, warn: float, crit: Optional[float]) -> Status:
        if crit is not None and value >= crit:
            return Status.CRITICAL
        return Status.WARNING if value >= warn else Status.OK

    def _filesystems(self) -> list[tuple[str, os.statvfs_result]]:
        seen: set[int] = set()
        found: list[tuple[str, os.statvfs_result]] = []
        for node_path in self._paths:
            path = self._host.path(node_path)
            try:
                dev = path.stat().st_dev
                if dev in seen:  # same filesystem as an earlier path: one check is enough
                    continue
                seen.add(dev)
                found.append((node_path, os.statvfs(path)))
            except OSError:
                continue
        return found

    def __call__(self) -> Observation:
        cfg = self._cfg
        checks: list[Check] = []
        for node_path, st in self._filesystems():
            suffix = "root" if node_path == "/" else unit_check_name(node_path)[5:]
            # Like df: space reserved for root is not available to services.
            avail_total = st.f_blocks - st.f_bfree + st.f_bavail
            used = _percent(st.f_blocks - st.f_bfree, avail_total)
            status = self._level(used, cfg.disk_warn_percent, cfg.disk_crit_percent)
            checks.append(Check(f"disk_{suffix}", status, f"{node_path} is {used}% full",
                                value=used, uom="%", warn=cfg.disk_warn_percent,
                                crit=cfg.disk_crit_percent, reason="disk",
                                fix="" if status is Status.OK else
                                f"free space on {node_path} (docker system prune, old logs)"))
            if st.f_files > 0:
                iused = _percent(st.f_files - st.f_ffree, st.f_files)
                status = self._level(iused, cfg.inode_warn_percent, cfg.inode_crit_percent)
                checks.append(Check(f"inodes_{suffix}", status,
                                    f"{node_path} uses {iused}% of its inodes", value=iused,
                                    uom="%", warn=cfg.inode_warn_percent,
                                    crit=cfg.inode_crit_percent, reason="inodes",
                                    fix="" if status is Status.OK else
                                    f"remove small files on {node_path}"))
        mem = round(self._memory_percent(), 1)
        status = self._level(mem, cfg.memory_warn_percent, cfg.memory_crit_percent)
        checks.append(Check("memory", status, f"memory {mem}% used", value=mem, uom="%",
                            warn=cfg.memory_warn_percent, crit=cfg.memory_crit_percent,
                            reason="memory", fix="" if status is Status.OK else
                            "reduce task memory reservations or add memory"))
        load = round(self._loadavg()[0] / max(1, self._cpu_count() or 1), 2)
        status = self._level(load, cfg.load_warn_per_cpu, None)
        checks.append(Check("load", status, f"load {load} per CPU", value=load,
                            warn=cfg.load_warn_per_cpu, reason="load",
                            fix="" if status is Status.OK else "place fewer tasks on this node"))
        return Observation(tuple(checks))


# --- Docker daemon ---------------------------------------------------------------------------

def docker_ping(socket_path: str, timeout: float) -> int:
    """HTTP status of `GET /_ping` on the Docker API socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        return _http10_get(sock, "docker", "/_ping")[0]


class DockerPingProbe:
    name = "docker_ping"

    def __init__(self, host: Host, interval: float, timeout: float = 5.0) -> None:
        self.interval = interval
        self.timeout = timeout
        self._host = host

    def __call__(self) -> Observation:
        path = str(self._host.path(agent_files.DOCKER_SOCKET))
        fix = "journalctl -u docker; systemctl restart docker if it is hung"
        try:
            code = docker_ping(path, self.timeout)
        except OSError as err:
            what = "did not answer in time" if isinstance(err, TimeoutError) else \
                f"did not answer ({err.strerror or err})"
            return Observation((Check(self.name, Status.CRITICAL,
                                      f"Docker daemon at {agent_files.DOCKER_SOCKET} {what}",
                                      reason="no_answer", fix=fix),))
        if code != 200:
            return Observation((Check(self.name, Status.CRITICAL,
                                      f"Docker daemon answered /_ping with HTTP {code}",
                                      reason="bad_answer", fix=fix),))
        return Observation((Check(self.name, Status.OK, "Docker daemon answers /_ping",
                                  reason="answers"),))


# --- ECS Exec ------------------------------------------------------------------------------

class EcsExecProbe:
    """Whether the ECS agent will offer ECS Exec: its CA bundle and SSM binaries are usable."""

    name = "ecs_exec"

    def __init__(self, host: Host, interval: float) -> None:
        self.interval = interval
        self._host = host

    def __call__(self) -> Observation:
        from anywhere_agent.host import ecs_exec

        try:
            ready = ecs_exec.readiness(self._host)
        except HostIOError as err:
            return Observation((Check(self.name, Status.UNKNOWN, err.message, fix=err.fix,
                                      reason="unreadable"),))
        if not ready.ready:
            # Tasks still run without it; only `aws ecs execute-command` fails, so WARNING.
            return Observation((Check(self.name, Status.WARNING,
                                      "ECS Exec will not work: " + "; ".join(ready.problems),
                                      fix=ecs_exec.INSTALL_FIX, reason="not_ready"),))
        return Observation((Check(self.name, Status.OK,
                                  f"ECS Exec ready (SSM binaries {ready.version}, CA bundle "
                                  f"{ecs_exec.CA_BUNDLE_MODE:04o})", reason="ready"),),
                           {"ecs_exec_version": ready.version or ""})


# --- the default set -----------------------------------------------------------------------

def default_probes(config: Config, host: Host, clock: Clock,
                   fetch: Fetch = http_get) -> list[Probe]:
    """Every probe for this node, each with its own interval."""
    every = config.supervise.interval_seconds
    docker_managed = config.docker_source != "none"
    introspection = IntrospectionProbe(config.supervise.introspection_url, config.cluster, every,
                                       timeout=min(5.0, max(1.0, every / 3)), fetch=fetch)
    probes: list[Probe] = [
        UnitProbe(host, "ecs", every),
        UnitProbe(host, "amazon-ssm-agent", every),
        UnitProbe(host, "docker", every, managed=docker_managed,
                  unmanaged_reason=f"docker_source={config.docker_source}"),
        introspection,
        RegistrationProbe(host, max(every, 60.0)),
        CredentialsProbe(host, clock, every, config.supervise.credentials_warn_age_seconds,
                         config.supervise.credentials_crit_age_seconds),
        PressureProbe(host, config, every),
        EcsExecProbe(host, max(every, 60.0)),
    ]
    if docker_managed:
        probes.append(DockerPingProbe(host, every, timeout=min(5.0, max(1.0, every / 3))))
    from anywhere_agent.supervise.acs_session import AcsSessionProbe  # it imports this module

    # After the introspection probe, whose answer of the same round it reuses.
    probes.append(AcsSessionProbe(host, config, clock, every, fetch=introspection.recent,
                                  timeout=min(5.0, max(1.0, every / 3))))
    return probes
