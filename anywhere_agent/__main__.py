"""`python -m anywhere_agent` runs the CLI."""

from anywhere_agent.cli.entry import main

main()
