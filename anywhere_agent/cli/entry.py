"""Console-script entry: `health` takes a fast path that never imports typer or boto3."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "health":
        from anywhere_agent.cli.health import main as health_main

        raise SystemExit(health_main(sys.argv[2:]))
    from anywhere_agent.cli.main import app

    app()


if __name__ == "__main__":
    main()
