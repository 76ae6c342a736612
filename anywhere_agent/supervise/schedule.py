"""Each probe owns its schedule; a probe that raises becomes an UNKNOWN check, logged hourly."""

from __future__ import annotations

import logging
from typing import Optional

from anywhere_agent.health.model import Check, Status
from anywhere_agent.supervise.clock import Clock
from anywhere_agent.supervise.journald_fields import fields
from anywhere_agent.supervise.probes import Observation, Probe

LOG = logging.getLogger(__name__)


class Periodic:
    """Runs one probe when it is due; remembers its last observation."""

    def __init__(self, probe: Probe, clock: Clock, error_log_every: float = 3600.0) -> None:
        self.probe = probe
        self.next_due = float("-inf")
        self.last: Optional[Observation] = None
        self._clock = clock
        self._error_log_every = error_log_every
        self._last_error_log = float("-inf")

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def run(self, now: float) -> Observation:
        # Schedule from the start so a slow probe does not drift the cadence.
        self.next_due = now + self.probe.interval
        try:
            self.last = self.probe()
        except Exception as err:
            if now - self._last_error_log >= self._error_log_every:
                self._last_error_log = now
                LOG.error("probe %s failed: %s", self.probe.name, err, exc_info=True,
                          extra=fields(check=self.probe.name, status="UNKNOWN"))
            self.last = Observation((Check(
                self.probe.name, Status.UNKNOWN, f"probe failed: {err.__class__.__name__}: "
                f"{err}", reason="probe_error",
                fix="report it with journalctl -u anywhere-agent"),))
        return self.last
