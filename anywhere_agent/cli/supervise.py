"""`anywhere-agent supervise`: run the node supervisor (systemd's Type=notify service).

Two doors to `serve()`: `main(argv)` (argparse) for entry.py's fast path, which the service
takes, and the typer command in cli/main.py (`python -m anywhere_agent.cli.main supervise`).
This module never imports typer: with it (and the pydantic it coerces values with) the
daemon would carry ~10 MiB of a 30 MiB budget, and start slower.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Optional

from anywhere_agent.cli.logs import configure
from anywhere_agent.cli.output import errors_to_exit, to_json

LOG = logging.getLogger(__name__)
ONCE_HELP = ("run one probe round, print its health as JSON and exit with its Nagios code "
             "(0-3)")


def run_supervisor(config_path: Optional[str], once: bool = False, root: str = "/") -> int:
    """Build everything once, loop until SIGTERM/SIGINT; `once`: one round, printed as JSON."""
    from anywhere_agent.config import load_config
    from anywhere_agent.host.gateway import Host
    from anywhere_agent.supervise.daemon import Supervisor
    from anywhere_agent.supervise.notify import Notifier

    config = load_config(root=Path(root), env=os.environ, path=config_path)
    host = Host(root)
    supervisor = Supervisor(config, host, notifier=Notifier())
    if once:
        health = supervisor.step()
        print(to_json(health.to_dict()))
        return int(health.status)
    metrics = None
    if config.health.metrics_listen:
        # Imported only when configured: http.server costs a few MiB of resident memory.
        from anywhere_agent.supervise.metrics_http import MetricsServer

        metrics = MetricsServer(config.health.metrics_listen, supervisor.prometheus_text)
        metrics.start()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Optional[FrameType]) -> None:
        LOG.info("signal %s: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        supervisor.run(stop)
    finally:
        if metrics is not None:
            metrics.stop()
    return 0


def _configure_logging(verbose: bool) -> None:
    configure(verbose=verbose)
    if not verbose:
        # The daemon's journal is its report channel: keep INFO (state changes, restarts).
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.INFO)


def serve(config_path: Optional[str], once: bool = False, verbose: bool = False) -> int:
    """Configure logging, then supervise; an error is one line and its exit code."""
    _configure_logging(verbose)
    with errors_to_exit():
        return run_supervisor(config_path, once=once)
    raise AssertionError("unreachable")  # pragma: no cover


def main(argv: list[str]) -> int:
    """argparse door: `anywhere-agent supervise [--config PATH] [--once] [-v]`."""
    parser = argparse.ArgumentParser(
        prog="anywhere-agent supervise",
        description="Supervise the ECS and SSM agents and publish the node's health "
                    "(run by systemd as anywhere-agent.service).")
    parser.add_argument("--config", metavar="PATH", default=None, help="agent.toml to read")
    parser.add_argument("--once", action="store_true", help=ONCE_HELP)
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    return serve(args.config, once=args.once, verbose=args.verbose)
