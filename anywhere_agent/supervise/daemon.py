"""The supervisor: a short loop (probe, assess, remediate, publish, notify) under systemd."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Optional

from anywhere_agent.config import Config
from anywhere_agent.errors import AgentError
from anywhere_agent.health.model import Check, HostHealth, Status
from anywhere_agent.health.render import prometheus
from anywhere_agent.health.state import state_bytes, write_error_bytes
from anywhere_agent.host.gateway import Host
from anywhere_agent.supervise.clock import Clock, SystemClock
from anywhere_agent.supervise.escalate import Escalator
from anywhere_agent.supervise.notify import Notifier
from anywhere_agent.supervise.probes import (
    DEREGISTERED_SUMMARY,
    REINSTALL_FIX,
    Probe,
    default_probes,
    unit_check_name,
)
from anywhere_agent.supervise.remedy import Remedy, Rule, default_rules
from anywhere_agent.supervise.reporting import Reporter, make_reporter
from anywhere_agent.supervise.schedule import Periodic

LOG = logging.getLogger(__name__)
SSM_UNIT_CHECK = unit_check_name("amazon-ssm-agent")
MIN_SLEEP = 0.05


def correlate(raw: dict[str, Check]) -> dict[str, Check]:
    """Conclusions that need two checks: stale credentials while the SSM agent runs means
    the agent is stuck or the node was deregistered centrally."""
    creds = raw.get("ssm_credentials")
    ssm = raw.get(SSM_UNIT_CHECK)
    if (creds is not None and creds.reason in ("stale", "expired") and ssm is not None
            and ssm.status is Status.OK):
        raw = dict(raw)
        raw["ssm_credentials"] = creds.with_status(
            Status.CRITICAL, f"{DEREGISTERED_SUMMARY} ({creds.summary})", REINSTALL_FIX)
    return raw


class Supervisor:
    """Holds the probes, their schedules and the remediation state of one node."""

    def __init__(
        self,
        config: Config,
        host: Host,
        clock: Optional[Clock] = None,
        notifier: Optional[Notifier] = None,
        reporter: Optional[Reporter] = None,
        probes: Optional[Sequence[Probe]] = None,
        rules: Optional[Sequence[Rule]] = None,
        pid: Optional[int] = None,
    ) -> None:
        self.config = config
        self.host = host
        self.clock: Clock = clock or SystemClock()
        self.notifier = notifier or Notifier(env={})
        self.reporter = reporter or make_reporter(config, host)
        chosen = default_probes(config, host, self.clock) if probes is None else probes
        self.schedules = [Periodic(p, self.clock) for p in chosen]
        self.escalator = Escalator(config.supervise.failure_threshold)
        self.remedies = [Remedy(r, host, config.supervise)
                         for r in (default_rules() if rules is None else rules)]
        self.pid = os.getpid() if pid is None else pid
        self.health: Optional[HostHealth] = None
        self._raw: dict[str, Check] = {}
        self._reported: dict[str, Check] = {}
        self._remedy_checks: dict[str, Check] = {}
        self._facts: dict[str, str] = {}
        self._write_failed: bool | None = None  # None until the first publish

    # -- one round -------------------------------------------------------------------------
    def step(self) -> HostHealth:
        """Probe what is due, assess, remediate, publish, notify systemd; returns the health."""
        now = self.clock.monotonic()
        self.notifier.watchdog()
        fresh = self._probe(now)
        self._assess(fresh)
        self._remediate(fresh, now)
        health = self._compose()
        self._publish(health, now)
        self.notifier.round(f"{health.status.name}: {health.summary}")
        return health

    def _probe(self, now: float) -> set[str]:
        fresh: set[str] = set()
        for sched in self.schedules:
            if not sched.due(now):
                continue
            obs = sched.run(now)
            for check in obs.checks:
                self._raw[check.name] = check
                fresh.add(check.name)
            self._facts.update(obs.facts)
        return fresh

    def _assess(self, fresh: set[str]) -> None:
        judged = correlate(self._raw)
        for name in judged:  # probe order, so the health lists checks in a stable order
            if name in fresh:
                self._reported[name] = self.escalator.observe(judged[name])

    def _remediate(self, fresh: set[str], now: float) -> None:
        for remedy in self.remedies:
            if remedy.rule.check in fresh:
                self._remedy_checks[remedy.name] = remedy.observe(self._raw, now)

    def _compose(self) -> HostHealth:
        checks = [*self._reported.values(), *self._remedy_checks.values(),
                  *self.reporter.checks()]
        return HostHealth.build(
            checks, self.clock.time(), cluster=self.config.cluster,
            instance_id=self._facts.get("instance_id", ""),
            container_instance_arn=self._facts.get("container_instance_arn", ""),
            pid=self.pid, interval_seconds=self.config.supervise.interval_seconds)

    def prometheus_text(self) -> str:
        health = self.health
        if health is None:
            health = HostHealth.unknown("the supervisor has not finished its first round",
                                        self.clock.time())
        return prometheus(health, max(0.0, self.clock.time() - health.generated_at))

    def _publish(self, health: HostHealth, now: float) -> None:
        self.health = health
        cfg = self.config.health
        try:
            # 0644: monitoring agents (nagios, node_exporter) read it as other users.
            self.host.write_atomic(cfg.state_file, state_bytes(health), mode=0o644)
            if cfg.textfile_path:
                self.host.write_atomic(cfg.textfile_path, prometheus(health), mode=0o644)
            if self._write_failed:
                LOG.warning("health state writable again at %s", cfg.state_file)
            if self._write_failed is not False:  # also on the first round: an older run's note
                self._clear_write_error()
            self._write_failed = False
        except AgentError as err:
            # Log once, keep supervising; tell `health` why the state goes stale, every round
            # (so the note stays fresh while the failure lasts).
            if not self._write_failed:
                LOG.error("cannot publish health: %s", err)
            self._write_failed = True
            self._note_write_error(str(err))
        self.reporter.report(health, now)

    def _note_write_error(self, error: str) -> None:
        cfg = self.config.health
        try:
            self.host.write_atomic(cfg.write_error_file,
                                   write_error_bytes(cfg.state_file, error, self.clock.time()),
                                   mode=0o644)
        except AgentError as err:
            LOG.debug("cannot note the write error either: %s", err)

    def _clear_write_error(self) -> None:
        try:
            self.host.remove(self.config.health.write_error_file)
        except AgentError as err:
            LOG.warning("cannot remove %s: %s", self.config.health.write_error_file, err)

    # -- the loop --------------------------------------------------------------------------
    def sleep_for(self) -> float:
        """Until the next probe is due, but at most half the watchdog interval."""
        now = self.clock.monotonic()
        wait = min((s.next_due for s in self.schedules), default=now + 1.0) - now
        if self.notifier.watchdog_seconds is not None:
            wait = min(wait, self.notifier.watchdog_seconds / 2)
        return max(MIN_SLEEP, wait)

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set (SIGTERM), then leave an honest 'stopped' state behind."""
        LOG.info("supervising cluster %s every %ss", self.config.cluster,
                 self.config.supervise.interval_seconds)
        while not stop.is_set():
            self.step()
            stop.wait(self.sleep_for())
        self.shutdown()

    def shutdown(self) -> None:
        self.notifier.stopping("stopping: health is UNKNOWN until the supervisor runs again")
        last = self.health.checks if self.health else ()
        stopped = replace(
            HostHealth.unknown("the supervisor stopped", self.clock.time(),
                               fix="systemctl start anywhere-agent", checks=last),
            cluster=self.config.cluster, pid=self.pid,
            instance_id=self._facts.get("instance_id", ""),
            container_instance_arn=self._facts.get("container_instance_arn", ""))
        try:
            self.host.write_atomic(self.config.health.state_file, state_bytes(stopped),
                                   mode=0o644)
        except AgentError as err:
            LOG.warning("cannot record the stop in the health state: %s", err)
