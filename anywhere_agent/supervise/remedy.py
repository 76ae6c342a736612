"""Bounded remediation: restart a unit only after its failure lasted, with backoff and a breaker.

Backoff is a schedule, not a retry: after the n-th restart without a healthy probe in
between, the next restart is allowed `backoff_seconds(n)` later (the loop never sleeps on it;
nothing is retried in place, so tenacity, which drives retries, has no part in it).
Independently, once `max_per_window` restarts happened within the window the breaker stays
open until the oldest one leaves it, so even a unit that recovers briefly between hangs is
restarted at most that often.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from anywhere_agent.config import SuperviseConfig
from anywhere_agent.health.model import Check, Status
from anywhere_agent.host.gateway import Host
from anywhere_agent.supervise.journald_fields import fields
from anywhere_agent.supervise.probes import unit_check_name

LOG = logging.getLogger(__name__)
WINDOW_SECONDS = 3600.0


@dataclass(frozen=True)
class Rule:
    """Restart `unit` when check `check` fails for one of `reasons` while `requires` are OK."""

    unit: str
    check: str
    reasons: frozenset[str]
    requires: tuple[str, ...]
    why: str


def default_rules() -> list[Rule]:
    return [
        # Alive (systemd says active) but not answering: systemd cannot see this, we can.
        Rule("ecs", "ecs_introspection", frozenset({"no_answer", "bad_answer"}),
             (unit_check_name("ecs"),), "the ECS agent does not answer its introspection API"),
        # Registered and running but not rotating credentials: a stuck agent, or a host
        # deregistered centrally, where a restart is harmless and re-registering is not ours.
        Rule("amazon-ssm-agent", "ssm_credentials", frozenset({"stale", "expired"}),
             (unit_check_name("amazon-ssm-agent"), "ssm_registration"),
             "the SSM agent stopped rotating its credentials"),
    ]


def backoff_seconds(restarts: int, initial: float, maximum: float) -> float:
    """`initial` after the first restart in a row, doubling after each further one, at most
    `maximum`: 30, 60, 120, ... 600 with the defaults."""
    doublings = min(max(0, restarts - 1), 64)  # past 2**64 the cap has long been reached
    return float(min(maximum, initial * 2.0 ** doublings))


class Remedy:
    """One unit's remediation state: failures since the last restart, restart history."""

    def __init__(self, rule: Rule, host: Host, settings: SuperviseConfig,
                 window: float = WINDOW_SECONDS) -> None:
        self.rule = rule
        self.name = "remedy_" + unit_check_name(rule.unit)[5:]
        self.threshold = max(1, settings.failure_threshold)
        self.max_per_window = max(1, settings.max_restarts_per_hour)
        self.window = window
        self._initial = settings.backoff_initial_seconds
        self._maximum = settings.backoff_max_seconds
        self._host = host
        self._restarts: deque[float] = deque()
        self._unrecovered = 0  # restarts since the check was last seen healthy
        self._failing = 0
        self._last_error = ""

    # -- schedule ------------------------------------------------------------------------
    def backoff(self, restarts: int) -> float:
        """Seconds to wait after the `restarts`-th restart in a row."""
        return backoff_seconds(restarts, self._initial, self._maximum)

    def _prune(self, now: float) -> None:
        while self._restarts and self._restarts[0] <= now - self.window:
            self._restarts.popleft()

    def breaker_open(self, now: float) -> bool:
        self._prune(now)
        return len(self._restarts) >= self.max_per_window

    def next_allowed(self, now: float) -> float:
        self._prune(now)
        if not self._restarts:
            return -math.inf
        allowed = -math.inf
        if self._unrecovered:
            allowed = self._restarts[-1] + self.backoff(self._unrecovered)
        if len(self._restarts) >= self.max_per_window:
            allowed = max(allowed, self._restarts[0] + self.window)
        return allowed

    # -- decision --------------------------------------------------------------------------
    def observe(self, raw: Mapping[str, Check], now: float) -> Check:
        """Called each time the rule's check was probed; may restart the unit once."""
        target = raw.get(self.rule.check)
        failing = (target is not None and target.status is not Status.OK
                   and target.reason in self.rule.reasons)
        if not failing:
            self._failing = 0
            self._unrecovered = 0
            return self.status(now, failing=False)
        self._failing += 1
        if self._failing < self.threshold:
            return self.status(now, failing=True, note=f"failing for {self._failing} of "
                               f"{self.threshold} probes before a restart")
        blocked = [n for n in self.rule.requires
                   if raw.get(n) is None or raw[n].status is not Status.OK]
        if blocked:
            return self.status(now, failing=True, note="not restarting while "
                               f"{', '.join(blocked)} is not OK")
        if now < self.next_allowed(now):
            return self.status(now, failing=True)
        self._restart(now)
        return self.status(now, failing=True, note=f"restarted {self.rule.unit}")

    def _restart(self, now: float) -> None:
        unit = self.rule.unit
        self._restarts.append(now)
        self._unrecovered += 1
        self._failing = 0
        LOG.warning("restarting %s: %s for %s probes", unit, self.rule.why, self.threshold,
                    extra=fields(check=self.name, unit=unit, status="RESTART"))
        # --no-block: queue the job and return, so a slow stop cannot starve the watchdog.
        res = self._host.run(["systemctl", "--no-block", "restart", unit], timeout=30)
        self._last_error = "" if res.ok else res.last_line()
        if not res.ok:
            LOG.error("restart of %s failed: %s", unit, self._last_error,
                      extra=fields(check=self.name, unit=unit, status="RESTART_FAILED"))

    def status(self, now: float, failing: bool, note: str = "") -> Check:
        self._prune(now)
        count = len(self._restarts)
        unit = self.rule.unit
        value = float(count)
        if failing and self.breaker_open(now):
            wait = max(0.0, self.next_allowed(now) - now)
            return Check(self.name, Status.CRITICAL,
                         f"circuit breaker open: {unit} restarted {count} times in the last "
                         f"hour and still failing; next restart allowed in {wait / 60:.0f} min",
                         value=value, reason="breaker_open",
                         fix=f"investigate: journalctl -u {unit}; the supervisor will not "
                         "restart it more often")
        parts = [f"{count} restarts of {unit} in the last hour"]
        if failing and note:
            parts.append(note)
        elif failing and count:
            parts.append(f"backing off, next restart allowed in "
                         f"{max(0.0, self.next_allowed(now) - now):.0f}s")
        if self._last_error:
            parts.append(f"last restart failed: {self._last_error}")
        return Check(self.name, Status.OK, "; ".join(parts), value=value,
                     reason="backing_off" if failing else "idle")
