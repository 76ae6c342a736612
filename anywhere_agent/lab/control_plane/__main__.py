"""Run the control plane in the foreground until SIGTERM or SIGINT (the lab starts it this way)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Optional

LOG = logging.getLogger("anywhere_agent.lab.control_plane")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m anywhere_agent.lab.control_plane", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--pid-file", type=Path, help="write our PID here once listening")
    parser.add_argument(
        "--ping-timeout",
        type=float,
        default=None,
        help="lab seconds without an SSM heartbeat before PingStatus=ConnectionLost (900)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="lab seconds per wall-clock second (cadences run this much faster)",
    )
    parser.add_argument(
        "--region-port",
        action="append",
        default=[],
        metavar="REGION=PORT",
        help="also serve REGION's own endpoint on PORT (repeatable)",
    )
    parser.add_argument(
        "--credential-lifetime",
        type=float,
        default=1800.0,
        help="lifetime of the role credentials vended to managed instances",
    )
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from anywhere_agent.lab.control_plane.server import ControlPlane

    stop = threading.Event()

    def _on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if args.ping_timeout is not None:
        extra = {"ping_timeout": args.ping_timeout}
    else:
        extra = {}
    plane = ControlPlane(
        host=args.host,
        port=args.port,
        region=args.region,
        time_scale=args.time_scale,
        region_ports=_region_ports(parser, args.region_port),
        credential_lifetime=args.credential_lifetime,
        fault_seed=args.fault_seed,
        **extra,
    )
    with plane:
        if args.pid_file:
            # Written only once the port is bound, so "PID file exists" means "ready".
            tmp = args.pid_file.with_name(args.pid_file.name + ".tmp")
            tmp.write_text(f"{os.getpid()}\n")
            tmp.replace(args.pid_file)
        print(f"control plane listening on {plane.url}", flush=True)
        stop.wait()
    if args.pid_file:
        args.pid_file.unlink(missing_ok=True)
    LOG.info("control plane stopped")
    return 0


def _region_ports(parser: argparse.ArgumentParser, specs: list[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for spec in specs:
        region, _, port = spec.partition("=")
        if not region or not port.isdigit():
            parser.error(f"--region-port wants REGION=PORT, not {spec!r}")
        ports[region] = int(port)
    return ports


if __name__ == "__main__":
    raise SystemExit(main())
