"""Typed preflight results: one CheckResult per check, gathered in a PreflightReport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# A preflight check's verdict: a gate before install (does it stop the install?). Health's
# Status (OK/WARNING/CRITICAL/UNKNOWN, health.model) is a running node's Nagios state; the two
# answer different questions, so they have different names and words.
Verdict = Literal["pass", "warn", "fail", "skip"]
VERDICTS: tuple[Verdict, ...] = ("pass", "warn", "fail", "skip")

# ANSI SGR colours for the status word only; the rest of the line stays plain for grep.
_COLOURS: dict[Verdict, str] = {"pass": "32", "warn": "33", "fail": "31", "skip": "2"}


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome; `fix` says what to do and is empty when there is nothing to do."""

    name: str
    status: Verdict
    summary: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "summary": self.summary,
                "fix": self.fix}


def worst_verdict(statuses: list[Verdict]) -> Verdict:
    """fail > warn > pass > skip: the status a check with several findings reports."""
    for status in ("fail", "warn", "pass"):
        if status in statuses:
            return status
    return "skip"


@dataclass(frozen=True)
class PreflightReport:
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips do not stop an install)."""
        return not self.failed

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in VERDICTS}

    def to_dict(self) -> dict[str, object]:
        """JSON shape of `preflight --json`; these keys are a contract (tests pin them)."""
        return {
            "ok": self.ok,
            "counts": self.counts(),
            "checks": [c.to_dict() for c in self.checks],
        }

    def render_text(self, color: bool = False) -> str:
        """One line per check; warnings and failures carry their fix on the same line."""
        width = max((len(c.name) for c in self.checks), default=0)
        lines = []
        for check in self.checks:
            word = check.status.upper().ljust(4)
            if color:
                word = f"\x1b[{_COLOURS[check.status]}m{word}\x1b[0m"
            line = f"{word}  {check.name.ljust(width)}  {check.summary}"
            if check.fix and check.status in ("warn", "fail"):
                line += f" -- fix: {check.fix}"
            lines.append(line)
        return "\n".join(lines)

    def summary_line(self) -> str:
        counts = self.counts()
        verdict = "ok" if self.ok else "FAILED"
        return (f"preflight {verdict}: {counts['pass']} passed, {counts['warn']} warnings, "
                f"{counts['fail']} failed, {counts['skip']} skipped")
