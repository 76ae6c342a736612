"""Console-script entry: `health` and `supervise` take fast paths that skip typer and boto3;
the node commands (install, preflight, status, uninstall) skip the central and lab groups.

`health` is run by monitoring systems every few seconds (cold start budget) and `supervise` is a
long-lived daemon (memory budget); both have small argparse front ends of their own.
"""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "health":
        from anywhere_agent.cli.health import main as health_main

        raise SystemExit(health_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "supervise":
        from anywhere_agent.cli.supervise import main as supervise_main

        raise SystemExit(supervise_main(sys.argv[2:]))
    from anywhere_agent.cli import main as cli

    if len(sys.argv) > 1 and sys.argv[1] in cli.NODE_COMMANDS:
        cli.node_app()  # without the central and lab groups (and their imports)
    else:
        cli.mount_all()()


if __name__ == "__main__":
    main()
