"""What a support bundle holds, gathered through the host gateway: reports, files, log tails,
command output; each entry redacted, and the whole bounded in size."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from anywhere_agent import __version__
from anywhere_agent.config import Config, load_config, load_health_config
from anywhere_agent.errors import AgentError
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.loopback import HttpGet, loopback_get
from anywhere_agent.support.redact import SECRET_SOURCES, Redactor, learn, url_passwords

LOG = logging.getLogger(__name__)

# The bound: the archive holds at most this much text before compression (a few MiB on the
# wire). Logs and journals are tails; reports and configuration come first and are never cut.
BOUND_BYTES = 8 << 20
LOG_TAIL_BYTES = 512 << 10
FILE_BYTES = 256 << 10
JOURNAL_LINES = 2000
COMMAND_TIMEOUT = 20.0

UNITS = (agent_files.ECS_UNIT, agent_files.SSM_UNIT, agent_files.DOCKER_UNIT,
         agent_files.AGENT_UNIT)
CONFIG_FILES = {
    "config/ecs/etc-ecs.config": agent_files.ECS_CONFIG,
    "config/ecs/var-lib-ecs.config": agent_files.ECS_VAR_CONFIG,
    "config/ssm/amazon-ssm-agent.json": agent_files.SSM_CONFIG,
    "config/ssm/registration": agent_files.SSM_REGISTRATION,
    "config/ssm/identity_config.json": agent_files.SSM_IDENTITY_CONFIG,
    "config/apt/90anywhere-agent-proxy": agent_files.APT_PROXY_CONF,
    "config/docker/daemon.json": "/etc/docker/daemon.json",
    "config/systemd/anywhere-agent.service": agent_files.AGENT_UNIT_PATH,
    "state/state.json": agent_files.STATE_FILE,
    "host/os-release": "/etc/os-release",
    "host/meminfo": "/proc/meminfo",
    "host/loadavg": "/proc/loadavg",
}
_ECS_LOGS, _SSM_LOGS = (p.rsplit("/", 1)[0] for p in (agent_files.ECS_AGENT_LOG,
                                                       agent_files.SSM_AGENT_LOG))
LOG_FILES = {
    "logs/ecs-agent.log": agent_files.ECS_AGENT_LOG,
    "logs/ecs-init.log": f"{_ECS_LOGS}/ecs-init.log",
    "logs/amazon-ssm-agent.log": agent_files.SSM_AGENT_LOG,
    "logs/amazon-ssm-errors.log": f"{_SSM_LOGS}/errors.log",
}
COMMANDS = {
    "commands/systemctl-status.txt": ["systemctl", "status", "--no-pager", "--lines=0", *UNITS],
    "commands/docker-info.txt": ["docker", "info"],
    "commands/df.txt": ["df", "-hP"],
    "commands/df-inodes.txt": ["df", "-iP"],
    "commands/uname.txt": ["uname", "-a"],
    **{f"journal/{unit}.txt": ["journalctl", "-u", unit, "-n", str(JOURNAL_LINES), "--no-pager",
                               "-o", "short-iso"] for unit in UNITS},
}


@dataclass
class Entry:
    name: str
    data: bytes
    source: str
    truncated: bool = False
    tail: bool = False  # when cut for the bound, keep the end (logs), not the start


@dataclass
class Collection:
    entries: list[Entry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    omitted: list[str] = field(default_factory=list)
    redactions: int = 0


@dataclass(frozen=True)
class NodeFacts:
    """What the caller knows about the process (not the node): who runs it, on what CPU."""

    env: Mapping[str, str]
    euid: int
    machine: str
    config_path: Optional[str] = None


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


class Collector:
    def __init__(self, host: Host, facts: NodeFacts, http_get: HttpGet = loopback_get,
                 now: Callable[[], float] = time.time) -> None:
        self.host, self.facts, self.http_get, self.now = host, facts, http_get, now
        self.out = Collection()

    def _attempt(self, what: str, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """One part of the bundle; its failure is recorded in the bundle, never fatal."""
        try:
            fn(*args, **kwargs)
        except AgentError as err:
            self.out.errors.append(f"{what}: {err}")
        except Exception as err:  # a support tool must still deliver the rest
            LOG.debug("support bundle: %s failed", what, exc_info=True)
            self.out.errors.append(f"{what}: {type(err).__name__}: {err}")

    def add(self, name: str, data: bytes, source: str, tail: bool = False,
            truncated: bool = False) -> None:
        self.out.entries.append(Entry(name, data, source, truncated, tail))

    # -- parts ------------------------------------------------------------------------------
    def config(self) -> Config:
        try:
            return load_config(self.host.root, dict(self.facts.env), {}, self.facts.config_path)
        except AgentError as err:
            self.out.errors.append(f"configuration: {err} (reports below use the defaults)")
            return Config()

    def reports(self, cfg: Config) -> None:
        from anywhere_agent.health.state import read_state
        from anywhere_agent.node.status import gather
        from anywhere_agent.preflight import run_preflight

        def preflight() -> None:
            report = run_preflight(cfg, self.host, self.facts.env, euid=self.facts.euid,
                                   machine=self.facts.machine, network=False)
            self.add("reports/preflight.json", _json(report.to_dict()), "anywhere-agent preflight "
                     "--no-network --json")

        def status() -> None:
            self.add("reports/status.json", _json(gather(cfg, self.host, self.http_get)),
                     "anywhere-agent status --json")

        def health() -> None:
            hcfg = load_health_config(self.host.root, self.facts.env, self.facts.config_path)
            self.add("reports/health.json", _json(read_state(self.host, hcfg,
                                                             self.now()).to_dict()),
                     "anywhere-agent health --format json")

        for name, part in (("preflight", preflight), ("status", status), ("health", health)):
            self._attempt(name, part)

    def file(self, name: str, node_path: str, limit: int = FILE_BYTES,
             tail: bool = False) -> None:
        if node_path in SECRET_SOURCES:  # never, even redacted
            return
        found = self.host.read_tail(node_path, limit)
        if found is not None:
            self.add(name, found.data, node_path, tail=tail, truncated=found.truncated)

    def files(self, cfg: Config) -> None:
        agent_toml = (self.facts.config_path or cfg.source_path
                      or agent_files.CONFIG_DIR + "/agent.toml")
        wanted = {"config/agent.toml": agent_toml, **CONFIG_FILES}
        proxy_dir = agent_files.CONFIG_DIR + "/proxy"
        wanted.update({f"config/proxy/{f}": f"{proxy_dir}/{f}"
                       for f in self.host.listdir(proxy_dir)})
        for unit in UNITS:
            dropins = f"/etc/systemd/system/{unit}.service.d"
            wanted.update({f"config/systemd/{unit}.service.d/{c}": f"{dropins}/{c}"
                           for c in self.host.listdir(dropins)})
        for name, path in wanted.items():
            self._attempt(name, self.file, name, path)
        for name, path in LOG_FILES.items():
            self._attempt(name, self.file, name, path, LOG_TAIL_BYTES, tail=True)

    def commands(self) -> None:
        for name, argv in COMMANDS.items():
            self._attempt(name, self.command, name, argv)

    def command(self, name: str, argv: list[str]) -> None:
        res = self.host.run(argv, timeout=COMMAND_TIMEOUT)
        text = f"$ {' '.join(argv)}\n(exit {res.returncode})\n{res.stdout}"
        if res.stderr.strip():
            text += f"\n--- stderr ---\n{res.stderr}"
        self.add(name, text.encode(), " ".join(argv), tail=name.startswith("journal/"))

    # -- the whole --------------------------------------------------------------------------
    def collect(self, redactor: Optional[Redactor] = None) -> Collection:
        cfg = self.config()
        self.reports(cfg)
        self.files(cfg)
        self.commands()
        # The configuration read may be another file than the default one learn() reads.
        redact = redactor or learn(self.host, self.facts.env, url_passwords(
            f"{cfg.proxy.http} {cfg.proxy.https}"))
        for entry in self.out.entries:
            entry.data = redact(entry.data.decode("utf-8", "replace")).encode()
        self.out.errors = [redact(e) for e in self.out.errors]
        self.out.redactions = redact.count
        bound(self.out, BOUND_BYTES)
        return self.out


def bound(out: Collection, limit: int) -> None:
    """Keep the total under `limit`: entries in order, the last ones cut (a log keeps its
    end), and what no longer fits is left out and named in the manifest."""
    used = 0
    kept: list[Entry] = []
    for entry in out.entries:
        room = limit - used
        if room <= 0:
            out.omitted.append(entry.name)
            continue
        if len(entry.data) > room:
            entry.data = entry.data[-room:] if entry.tail else entry.data[:room]
            entry.truncated = True
        used += len(entry.data)
        kept.append(entry)
    out.entries = kept


def manifest(out: Collection, hostname: str, generated_at: str) -> dict[str, Any]:
    return {
        "schema": 1,
        "anywhere_agent": __version__,
        "hostname": hostname,
        "generated_at": generated_at,
        "bound_bytes": BOUND_BYTES,
        "redactions": out.redactions,
        "entries": [{"name": e.name, "source": e.source, "bytes": len(e.data),
                     "truncated": e.truncated} for e in out.entries],
        "omitted": out.omitted,
        "errors": out.errors,
    }
