"""Read the supervisor's state file and judge it: missing, unreadable or stale is UNKNOWN."""

from __future__ import annotations

import json
from dataclasses import replace

from anywhere_agent.config import HealthConfig
from anywhere_agent.errors import HostIOError
from anywhere_agent.health.model import Check, HostHealth, Status
from anywhere_agent.host.gateway import Host

START_FIX = "start it: systemctl start anywhere-agent (see journalctl -u anywhere-agent)"


def state_bytes(health: HostHealth) -> bytes:
    # Compact: written every round, and json's C encoder only runs without indentation.
    return (json.dumps(health.to_dict(), sort_keys=True, separators=(",", ":")) + "\n").encode()


def read_state(host: Host, config: HealthConfig, now: float) -> HostHealth:
    """The daemon's last HostHealth plus a `state_age` check, or UNKNOWN with the reason."""
    path = config.state_file
    try:
        text = host.read_text(path)
    except HostIOError as err:
        return HostHealth.unknown(f"cannot read {path}: {err.message}", now,
                                  fix="run the check as a user that can read the state file")
    if text is None:
        return HostHealth.unknown(f"no supervisor state at {path}: the supervisor is not running",
                                  now, fix=START_FIX)
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        health = HostHealth.from_dict(data)
    except ValueError as err:
        return HostHealth.unknown(f"supervisor state {path} is not valid JSON ({err})", now,
                                  fix="restart the supervisor: systemctl restart anywhere-agent")
    age = now - health.generated_at
    stale = config.stale_after_seconds
    age_check = Check("state_age", Status.OK, f"state written {max(age, 0.0):.0f}s ago",
                      value=round(max(age, 0.0), 3), uom="s", crit=stale)
    # A state file from the future means the clock moved back; it proves nothing either way.
    if age > stale or age < -stale:
        reason = (f"supervisor state is {age:.0f}s old (limit {stale:.0f}s): "
                  "the supervisor is not running or is hung")
        return HostHealth.unknown(
            reason, now, fix=START_FIX,
            checks=(*health.checks, age_check.with_status(Status.UNKNOWN, reason)))
    return replace(health, checks=(*health.checks, age_check))
