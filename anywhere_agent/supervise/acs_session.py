"""Whether the ECS agent has a live ACS session, told from its own log on the node.

AWS's `agentConnected` is the agent's ACS session (facts §6). Reading it from the cloud needs
DescribeContainerInstances, which the host role does not grant; the agent itself writes each
session opening and closing to /var/log/ecs/ecs-agent.log, so the node can tell with no
cloud rights at all. The messages are the agent's own (ecs-agent/acs/session/session.go,
agent/app/agent.go); its introspection API says whether the agent runs at all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from anywhere_agent.config import Config
from anywhere_agent.errors import HostIOError
from anywhere_agent.health.model import Check, Status
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host
from anywhere_agent.secret import redact_userinfo
from anywhere_agent.supervise.clock import Clock
from anywhere_agent.supervise.probes import Fetch, Observation, http_get

ECS_AGENT_LOG = agent_files.ECS_AGENT_LOG
LOG_DIR, _, LOG_NAME = ECS_AGENT_LOG.rpartition("/")
CHECK = "ecs_acs_session"
# session.go startSessionOnce, logged once the WebSocket to ACS is up.
CONNECTED = "Connected to ACS endpoint"
# Every way a session ends or fails to start (session.go Start/startSessionOnce/reconnectDelay
# and the heartbeat timer), and the agent starting again (agent.go): each means "not connected
# from here on" until the next CONNECTED.
DOWN = (
    "Current ACS session is done and a new one might be created.",
    "ACS WebSocket connection closed",  # also "... for a valid reason" (a periodic reconnect)
    "Failed to connect to ACS",
    "ACS: Unable to discover poll endpoint",
    "ACS Connection hasn't had any activity for too long",
    "Disconnected from ACS",
    "Container instance is deregistered",
    "ACS session ended (context closed)",
    "Starting Amazon ECS Agent",
)
DEREGISTERED = "Container instance is deregistered"
AGENT_START = "Starting Amazon ECS Agent"
# Below info level the agent does not write CONNECTED, so silence would read as an outage.
QUIET_LEVELS = ("warn", "error", "crit")
READ_LIMIT = 512 << 10  # per read: a log that grew more than this is read from its tail

_FIELD = r'(?:^|\s){}=(?:"((?:[^"\\]|\\.)*)"|(\S+))'
_TIME, _MSG, _ERROR = (re.compile(_FIELD.format(k)) for k in ("time", "msg", "error"))


@dataclass(frozen=True)
class Event:
    at: float
    connected: bool
    message: str
    error: str = ""


def _field(pattern: re.Pattern[str], line: str) -> str:
    m = pattern.search(line)
    if m is None:
        return ""
    if m.group(1) is None:
        return m.group(2)
    try:
        return str(json.loads(f'"{m.group(1)}"'))  # Go's %q escapes are JSON's for text
    except ValueError:
        return m.group(1)


def _stamp(text: str) -> Optional[float]:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()


def parse_line(line: str) -> Optional[Event]:
    """The ACS event a log line records (logfmt, the default, or json), or None."""
    line = line.strip()
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        msg, when, error = (str(doc.get(k) or "") for k in ("msg", "time", "error"))
    else:
        if "ACS" not in line and AGENT_START not in line and DEREGISTERED not in line:
            return None  # most lines: skip before any regex
        msg, when, error = _field(_MSG, line), _field(_TIME, line), _field(_ERROR, line)
    at = _stamp(when)
    if at is None:
        return None
    if msg.startswith(CONNECTED):
        return Event(at, True, msg)
    if msg.startswith(DOWN):
        return Event(at, False, msg, error)
    return None


# Lines worth parsing, found in the raw bytes: a log read whole into str lines would leave
# megabytes of small objects in a daemon with a 30 MiB budget.
_CANDIDATE = re.compile(rb"^.*(?:ACS|Starting Amazon ECS Agent|Container instance is "
                        rb"deregistered).*$", re.M)


def parse(text: str | bytes) -> list[Event]:
    data = text.encode() if isinstance(text, str) else text
    found = (parse_line(m.group().decode("utf-8", "replace")) for m in _CANDIDATE.finditer(data))
    return [e for e in found if e is not None]


@dataclass(frozen=True)
class Session:
    """What the log says so far: connected or not, since when, and the last error seen."""

    connected: Optional[bool] = None  # None: no ACS event seen yet
    since: float = 0.0
    error: str = ""
    deregistered: bool = False  # ACS said the container instance is inactive

    def after(self, events: list[Event]) -> Session:
        state = self
        for ev in events:
            if ev.connected:
                state = Session(True, ev.at)
                continue
            gone = ev.message.startswith(DEREGISTERED)
            if state.connected is not False:  # a new outage
                state = Session(False, ev.at, ev.error, gone)
            else:  # the outage goes on; a restarted agent may find its instance again
                gone = gone or (state.deregistered and not ev.message.startswith(AGENT_START))
                state = Session(False, state.since, ev.error or state.error, gone)
        return state


def diagnose(state: Session, cfg: Config) -> tuple[str, str]:
    """(reason, fix) for an ACS session that stays down, from the agent's last error."""
    error = state.error
    text = error.lower()
    region = cfg.region or "REGION"
    logs = f"the agent's own words: grep ACS {ECS_AGENT_LOG}"
    if state.deregistered or "inactiveinstance" in text:
        return "deregistered", (
            "ACS says this container instance is inactive (deregistered centrally): run "
            "`anywhere-agent status`, then re-install with a new activation "
            "(the agent only retries hourly)")
    if any(k in text for k in ("credential", "expiredtoken", "accessdenied", "unrecognizedclient",
                               "signature", "authfailure", "forbidden", "403")):
        return "credentials", (
            "the ECS agent's credentials are refused or missing: check amazon-ssm-agent runs and "
            "rewrites /root/.aws/credentials (anywhere-agent status), and that the host role "
            f"has AmazonEC2ContainerServiceforEC2Role; {logs}")
    if "proxy" in text:
        where = redact_userinfo(cfg.proxy.https or cfg.proxy.http) or "the proxy"
        return "proxy", (
            f"the ECS agent cannot get through {where}: check the proxy allows CONNECT to "
            f"ecs-a-*.{region}.amazonaws.com:443 and the drop-in /etc/systemd/system/ecs.service.d"
            f"/http-proxy.conf; {logs}")
    if error:
        return "endpoint", (
            f"the ECS agent cannot reach its ACS endpoint (ecs-a-*.{region}.amazonaws.com:443, "
            f"or ECS_BACKEND_HOST's): check DNS, routes and firewall "
            f"(anywhere-agent preflight){', and the proxy' if cfg.proxy.enabled else ''}; {logs}")
    return "disconnected", (
        "check, in this order, the endpoint (anywhere-agent preflight), the proxy, and the "
        f"credentials (anywhere-agent status); {logs}")


class AcsSessionProbe:
    """Connected to ACS: OK; disconnected for `acs_warn_seconds`: WARNING, for
    `acs_crit_seconds`: CRITICAL, with the fix the agent's last error points at.

    Reads only what the log gained since the last probe (the agent rotates it hourly: a new
    file is read from its start, and at first the newest rotated one too).
    """

    name = CHECK

    def __init__(self, host: Host, config: Config, clock: Clock, interval: float,
                 fetch: Fetch = http_get, timeout: float = 5.0) -> None:
        self.interval = interval
        self._host = host
        self._cfg = config
        self._clock = clock
        self._fetch = fetch
        self._timeout = timeout
        self._url = config.supervise.introspection_url.rstrip("/") + "/v1/metadata"
        self._ident: Optional[tuple[int, int]] = None
        self._offset = 0
        self.session = Session()

    def _read(self) -> None:
        tail = self._host.read_tail(ECS_AGENT_LOG, READ_LIMIT,
                                    0 if self._ident is None else self._offset)
        if tail is None:
            self._ident = None
            return
        if self._ident is None:
            # The first probe: the session may have opened before the hour turned.
            self._read_rotated(0)
        elif tail.ident != self._ident or tail.size < self._offset:
            # A new file: first what the old one gained before it was rotated, then all of it.
            self._read_rotated(self._offset)
            tail = self._host.read_tail(ECS_AGENT_LOG, READ_LIMIT) or tail
        # Only whole lines: the agent may be half-way through writing the last one.
        data = tail.data[:tail.data.rfind(b"\n") + 1]
        self._ident, self._offset = tail.ident, tail.offset + len(data)
        self.session = self.session.after(parse(data))

    def _read_rotated(self, start: int) -> None:
        """The newest rotated log (ecs-agent.log.2026-11-30-05, the agent's hourly default)."""
        rotated = [n for n in self._host.listdir(LOG_DIR) if n.startswith(LOG_NAME + ".")]
        if rotated:
            tail = self._host.read_tail(f"{LOG_DIR}/{max(rotated)}", READ_LIMIT, start)
            if tail is not None:
                self.session = self.session.after(parse(tail.data))

    def _check(self, status: Status, summary: str, reason: str, fix: str = "",
               value: Optional[float] = None, skipped: bool = False) -> Observation:
        sup = self._cfg.supervise
        return Observation((Check(self.name, status, summary, value=value, fix=fix,
                                  uom="s" if value is not None else "", reason=reason,
                                  warn=sup.acs_warn_seconds, crit=sup.acs_crit_seconds,
                                  skipped=skipped),))

    def __call__(self) -> Observation:
        if self._cfg.ecs_loglevel in QUIET_LEVELS:
            return self._check(Status.UNKNOWN, f"cannot tell the ACS session: ecs_loglevel is "
                               f"{self._cfg.ecs_loglevel}, and the agent logs its connects at "
                               "info", "log_level", 'set ecs_loglevel = "info" and re-install',
                               skipped=True)
        try:
            self._read()
        except HostIOError as err:
            return self._check(Status.UNKNOWN, err.message, "unreadable", err.fix)
        try:
            answered = self._fetch(self._url, self._timeout)[0] == 200
        except OSError:
            answered = False
        if not answered:
            # ecs_introspection and unit_ecs already say so; not a second alarm for one cause.
            return self._check(Status.UNKNOWN, "ACS session not judged: the ECS agent does not "
                               "answer introspection", "agent_down", skipped=True)
        state = self.session
        now = self._clock.time()
        if state.connected is None:
            return self._check(Status.UNKNOWN, f"no ACS session recorded in {ECS_AGENT_LOG} "
                               "yet", "no_record", "if it persists: journalctl -u ecs",
                               skipped=True)
        if state.connected:
            return self._check(Status.OK, f"ECS agent connected to ACS for "
                               f"{_duration(now - state.since)}", "connected", value=0.0)
        down = max(0.0, now - state.since)
        sup = self._cfg.supervise
        last = f" (last error: {redact_userinfo(state.error)})" if state.error else ""
        if down < sup.acs_warn_seconds:
            return self._check(Status.OK, f"ECS agent reconnecting to ACS for "
                               f"{_duration(down)}{last}", "reconnecting", value=round(down, 1))
        reason, fix = diagnose(state, self._cfg)
        status = Status.CRITICAL if down >= sup.acs_crit_seconds else Status.WARNING
        return self._check(status, f"ECS agent not connected to ACS for {_duration(down)}: the "
                           f"cluster sees it disconnected and places no tasks here{last}",
                           reason, fix, value=round(down, 1))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
