"""Read the supervisor's state file and judge it: missing, unreadable or stale is UNKNOWN."""

from __future__ import annotations

import json
from dataclasses import replace

from anywhere_agent.config import HealthConfig
from anywhere_agent.errors import HostIOError
from anywhere_agent.health.model import SCHEMA_VERSION, VERSION_FIX, Check, HostHealth, Status
from anywhere_agent.host.gateway import Host

START_FIX = "start it: systemctl start anywhere-agent (see journalctl -u anywhere-agent)"


def state_bytes(health: HostHealth) -> bytes:
    # Compact: written every round, and json's C encoder only runs without indentation.
    return (json.dumps(health.to_dict(), sort_keys=True, separators=(",", ":")) + "\n").encode()


def write_error_bytes(state_file: str, error: str, now: float) -> bytes:
    doc = {"schema": SCHEMA_VERSION, "state_file": state_file, "error": error,
           "generated_at": now}
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def _write_error(host: Host, config: HealthConfig, now: float) -> HostHealth | None:
    """UNKNOWN naming the write error when the supervisor recently said it cannot write."""
    try:
        text = host.read_text(config.write_error_file)
        data = json.loads(text) if text else None
    except (HostIOError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("generated_at"), (int, float)):
        return None
    if abs(now - float(data["generated_at"])) > config.stale_after_seconds:
        return None  # an old note proves nothing about today's supervisor
    return HostHealth.unknown(
        f"the supervisor runs but cannot write its state file "
        f"{data.get('state_file') or config.state_file}: {data.get('error', 'unknown error')}",
        now, fix="make that path writable for root (disk full? read-only mount?); "
                 "see journalctl -u anywhere-agent")


def read_state(host: Host, config: HealthConfig, now: float) -> HostHealth:
    """The daemon's last HostHealth plus a `state_age` check, or UNKNOWN with the reason."""
    path = config.state_file
    blocked = _write_error(host, config, now)
    if blocked is not None:
        return blocked
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
    except ValueError as err:
        return HostHealth.unknown(f"supervisor state {path} is not valid JSON ({err})", now,
                                  fix="restart the supervisor: systemctl restart anywhere-agent")
    if data.get("schema") != SCHEMA_VERSION:
        return HostHealth.unknown(
            f"supervisor state {path} has schema {data.get('schema')!r}; this health reader "
            f"knows schema {SCHEMA_VERSION}", now, fix=VERSION_FIX)
    try:
        health = HostHealth.from_dict(data)
    except (ValueError, TypeError) as err:
        return HostHealth.unknown(f"supervisor state {path} is malformed ({err})", now,
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
