"""`anywhere-agent install` behind the CLI: the preflight gate, the plan, and the run."""

from __future__ import annotations

import os
from typing import Any

from anywhere_agent.config import Config
from anywhere_agent.errors import PreflightError
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.platform import uname_machine
from anywhere_agent.install.apply import Outcome, Progress, apply, plan, render_plan
from anywhere_agent.install.context import Activation, build_context


def run_preflight(cfg: Config, host: Host, network: bool = True) -> Any:
    """Preflight as this process sees the host (its environment, uid and machine)."""
    from anywhere_agent.preflight import run_preflight as run

    return run(cfg, host, dict(os.environ), euid=os.geteuid(), machine=uname_machine(),
               network=network)


def require_preflight(cfg: Config, host: Host) -> None:
    """Stop before install touches anything when preflight fails; name the first failure."""
    report = run_preflight(cfg, host)
    if report.ok:
        return
    first = report.failed[0]
    more = f" (+{len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
    raise PreflightError(f"preflight failed: {first.summary}{more}",
                         first.fix or "run `anywhere-agent preflight` for details")


def dry_run(cfg: Config, host: Host, activation: Activation | None,
            reregister: bool) -> tuple[dict[str, Any], str]:
    """The plan as JSON-ready data and as text; changes nothing."""
    planned = plan(build_context(cfg, host, activation, reregister))
    return {"dry_run": True, "steps": [p.to_dict() for p in planned]}, render_plan(planned)


def install(cfg: Config, host: Host, activation: Activation | None, reregister: bool,
            progress: Progress) -> tuple[Outcome, str]:
    """Converge the host; the outcome and its one-line summary."""
    ctx = build_context(cfg, host, activation, reregister)
    outcome = apply(ctx, progress)
    verdict = "changed" if outcome.changed else "already converged"
    ident = ctx.journal.identity
    line = (f"install ok ({verdict}, {outcome.seconds:.1f} s): "
            f"{ident.get('managed_instance_id', '')} "
            f"{ident.get('container_instance_arn', '')}").rstrip()
    return outcome, line
