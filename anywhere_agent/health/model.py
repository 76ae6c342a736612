"""Typed health: a Nagios-ordered Status, one Check per probe result, HostHealth for a node."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Optional

SCHEMA_VERSION = 1
# What a reader says about a state written by another version of anywhere-agent.
VERSION_FIX = ("run `health` from the anywhere-agent that runs the supervisor (after an "
               "upgrade: systemctl restart anywhere-agent)")


class Status(IntEnum):
    """Nagios plugin states; the value is also the `health --format nagios` exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """Rank for combining: CRITICAL outranks UNKNOWN, which outranks WARNING.

        Nagios' numbers put UNKNOWN last, but a host with one CRITICAL check is CRITICAL
        whatever else we could not tell.
        """
        return {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}[self]

    @classmethod
    def parse(cls, text: str) -> Status:
        try:
            return cls[text.upper()]
        except KeyError:
            return cls.UNKNOWN


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


@dataclass(frozen=True)
class Check:
    """One observation: `summary` says what was seen, `fix` what an operator should do.

    `value`/`uom`/`warn`/`crit` feed Nagios perfdata and Prometheus gauges. `failing_for` is
    how many consecutive probes failed; `reason` is a stable code for the cause. A `skipped`
    check (e.g. Docker when docker_source is none) is reported but never counts toward the
    overall status, and is never "OK".
    """

    name: str
    status: Status
    summary: str
    value: Optional[float] = None
    fix: str = ""
    uom: str = ""
    warn: Optional[float] = None
    crit: Optional[float] = None
    failing_for: int = 0
    skipped: bool = False
    reason: str = ""  # stable machine-readable cause, e.g. "no_answer", "stale"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.name,
            "status_code": int(self.status),
            "summary": self.summary,
            "value": self.value,
            "uom": self.uom,
            "warn": self.warn,
            "crit": self.crit,
            "fix": self.fix,
            "failing_for": self.failing_for,
            "skipped": self.skipped,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        def num(key: str) -> Optional[float]:
            value = data.get(key)
            return float(value) if isinstance(value, (int, float)) else None

        text = str(data.get("status", "UNKNOWN"))
        summary, fix = str(data.get("summary", "")), str(data.get("fix", ""))
        if text.upper() not in Status.__members__:
            # A status from a newer supervisor (DEGRADED, say) is not ours to rank as OK.
            summary = f"status {text!r} is unknown to this health reader: {summary}"
            fix = VERSION_FIX
        return cls(
            name=str(data.get("name", "unnamed")),
            status=Status.parse(text),
            summary=summary,
            value=num("value"),
            fix=fix,
            uom=str(data.get("uom", "")),
            warn=num("warn"),
            crit=num("crit"),
            failing_for=int(data.get("failing_for", 0) or 0),
            skipped=bool(data.get("skipped", False)),
            reason=str(data.get("reason", "")),
        )

    def with_status(self, status: Status, summary: str | None = None,
                    fix: str | None = None) -> Check:
        return replace(self, status=status,
                       summary=self.summary if summary is None else summary,
                       fix=self.fix if fix is None else fix)


def overall(checks: Sequence[Check]) -> Status:
    return worst(c.status for c in checks if not c.skipped)


def summarize(status: Status, checks: Sequence[Check]) -> str:
    """One line: 'all N checks OK' or the failing checks, worst first; then what was skipped,
    so a check that could not run (Docker not managed, say) is never mistaken for a pass."""
    counted = [c for c in checks if not c.skipped]
    bad = sorted((c for c in counted if c.status is not Status.OK),
                 key=lambda c: -c.status.severity)
    skipped = "".join(f"; skipped {c.name}: {c.summary}" for c in checks if c.skipped)
    if not counted:
        return "no checks ran" + skipped
    if not bad:
        return f"all {len(counted)} checks OK" + skipped
    return "; ".join(f"{c.name}: {c.summary}" for c in bad) + skipped


@dataclass(frozen=True)
class HostHealth:
    """The daemon's view of the node after one probe round (what the state file holds)."""

    status: Status
    checks: tuple[Check, ...]
    generated_at: float  # wall-clock epoch seconds
    summary: str = ""
    cluster: str = ""
    instance_id: str = ""  # the SSM managed-instance ID (mi-...)
    container_instance_arn: str = ""
    pid: int = 0
    interval_seconds: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, checks: Sequence[Check], generated_at: float, **kwargs: Any) -> HostHealth:
        status = overall(checks)
        return cls(status=status, checks=tuple(checks), generated_at=generated_at,
                   summary=summarize(status, checks), **kwargs)

    @classmethod
    def unknown(cls, reason: str, generated_at: float, fix: str = "",
                checks: Sequence[Check] = ()) -> HostHealth:
        """Health we cannot vouch for (no daemon, stale state); keeps any checks it had."""
        return cls(status=Status.UNKNOWN, checks=tuple(checks), generated_at=generated_at,
                   summary=reason, extra={"fix": fix} if fix else {})

    def check(self, name: str) -> Optional[Check]:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "status": self.status.name,
            "status_code": int(self.status),
            "summary": self.summary,
            "generated_at": self.generated_at,
            "cluster": self.cluster,
            "instance_id": self.instance_id,
            "container_instance_arn": self.container_instance_arn,
            "pid": self.pid,
            "interval_seconds": self.interval_seconds,
            "checks": [c.to_dict() for c in self.checks],
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostHealth:
        raw_checks = data.get("checks") or []
        checks = tuple(Check.from_dict(c) for c in raw_checks if isinstance(c, Mapping))
        extra = data.get("extra")
        recorded = Status.parse(str(data.get("status", "UNKNOWN")))
        # Never better than its checks: a check the writer ranked differently (or that this
        # reader cannot rank) must not hide behind the recorded overall status.
        status = worst((recorded, overall(checks)))
        summary = str(data.get("summary", ""))
        if status is not recorded:
            summary = summarize(status, checks)
        return cls(
            status=status,
            checks=checks,
            generated_at=float(data.get("generated_at", 0.0) or 0.0),
            summary=summary,
            cluster=str(data.get("cluster", "")),
            instance_id=str(data.get("instance_id", "")),
            container_instance_arn=str(data.get("container_instance_arn", "")),
            pid=int(data.get("pid", 0) or 0),
            interval_seconds=float(data.get("interval_seconds", 0.0) or 0.0),
            extra=dict(extra) if isinstance(extra, Mapping) else {},
        )
