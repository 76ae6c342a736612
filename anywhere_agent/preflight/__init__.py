"""Preflight: can this host run ECS Anywhere as configured? Typed checks, nothing changed.

`run_preflight(cfg, host, env, euid=..., machine=...)` returns a PreflightReport; each
CheckResult is pass | warn | fail | skip with a one-line summary and, unless it passed, a
fix. Exit codes: `anywhere-agent preflight` exits ExitCode.PREFLIGHT (4) when any check
fails (`report.ok` is False) and 0 otherwise; warnings and skipped checks never change the
exit code. `install` runs the same checks first and stops on the same condition.
"""

from anywhere_agent.preflight.model import CheckResult, PreflightReport, Verdict
from anywhere_agent.preflight.network import Connector, tcp_connect
from anywhere_agent.preflight.run import CHECKS, run_preflight

__all__ = [
    "CHECKS",
    "CheckResult",
    "Connector",
    "PreflightReport",
    "Verdict",
    "run_preflight",
    "tcp_connect",
]
