"""`anywhere-agent health`: the monitoring probe; argparse only, so it starts in milliseconds."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional

from anywhere_agent.errors import AgentError
from anywhere_agent.health.model import HostHealth, Status
from anywhere_agent.health.render import as_json, nagios, prometheus
from anywhere_agent.health.state import read_state

FORMATS = ("nagios", "json", "prometheus")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anywhere-agent health",
        description="Report the node's health from the supervisor's state "
                    "(exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN in every format). Checks: "
                    "the units, ECS introspection, the ECS agent's ACS session (from its log: "
                    "WARNING after [supervise] acs_warn_seconds disconnected, CRITICAL after "
                    "acs_crit_seconds), the SSM registration and credentials, disk, memory, "
                    "load, Docker.",
    )
    parser.add_argument("--format", choices=FORMATS, default="nagios")
    parser.add_argument("--config", metavar="PATH", default=None,
                        help="agent.toml to read (default /etc/anywhere-agent/agent.toml; "
                             "a user who cannot read it gets the [health] defaults)")
    parser.add_argument("--state-file", metavar="PATH", default=None,
                        help="the supervisor's state file, when [health] state_file is not "
                             "the default and agent.toml is not readable by this user")
    return parser


def evaluate(config_path: Optional[str], now: Optional[float] = None,
             root: Path = Path("/"), state_file: Optional[str] = None) -> HostHealth:
    """Load config and the daemon's state; any failure is UNKNOWN health, never a traceback."""
    # Imported here so a broken install still answers UNKNOWN instead of crashing the plugin.
    from dataclasses import replace

    from anywhere_agent.config import load_health_config
    from anywhere_agent.host.gateway import Host

    now = time.time() if now is None else now
    try:
        config = load_health_config(root=root, env=os.environ, path=config_path)
    except AgentError as err:
        return HostHealth.unknown(f"configuration: {err.message}", now, fix=err.fix)
    if state_file:
        config = replace(config, state_file=state_file)
    return read_state(Host(root), config, now)


def render(health: HostHealth, fmt: str, now: float) -> str:
    if fmt == "json":
        return as_json(health)
    if fmt == "prometheus":
        age = health.check("state_age")
        return prometheus(health, age.value if age and age.value is not None else None).rstrip()
    return nagios(health)[0]


def main(argv: list[str]) -> int:
    """Print the health in one format and return the Nagios exit code (0..3)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        # argparse exits 2 on bad usage, which Nagios would read as CRITICAL: say UNKNOWN.
        return 0 if exc.code == 0 else int(Status.UNKNOWN)
    now = time.time()
    health = evaluate(args.config, now, state_file=args.state_file)
    sys.stdout.write(render(health, args.format, now) + "\n")
    return int(health.status)
