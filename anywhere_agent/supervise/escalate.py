"""Escalate only what lasts: a CRITICAL probe result counts as WARNING until N probes in a row."""

from __future__ import annotations

import logging
from dataclasses import replace

from anywhere_agent.health.model import Check, Status
from anywhere_agent.supervise.journald_fields import fields

LOG = logging.getLogger(__name__)


class Escalator:
    """Counts consecutive failures per check and logs only changes of reported status."""

    def __init__(self, threshold: int) -> None:
        self.threshold = max(1, threshold)
        self._streak: dict[str, int] = {}
        self._reported: dict[str, Status] = {}

    def observe(self, check: Check) -> Check:
        failing = check.status is not Status.OK and not check.skipped
        streak = self._streak.get(check.name, 0) + 1 if failing else 0
        self._streak[check.name] = streak
        out = replace(check, failing_for=streak)
        if check.status is Status.CRITICAL and streak < self.threshold:
            out = out.with_status(
                Status.WARNING, f"{check.summary} (critical after {self.threshold} failed "
                f"probes, {streak} so far)")
        before = self._reported.get(check.name)
        if before is not out.status:
            self._reported[check.name] = out.status
            level = logging.INFO if out.status is Status.OK or out.skipped else logging.WARNING
            if before is not None or level != logging.INFO:
                LOG.log(level, "check %s is %s: %s", check.name, out.status.name, out.summary,
                        extra=fields(check=check.name, status=out.status.name))
        return out
