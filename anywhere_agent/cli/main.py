"""The `anywhere-agent` command: wiring only; each noun lives in its own module."""

from __future__ import annotations

from typing import Any, Optional

import typer

from anywhere_agent.cli import logs, node, output
from anywhere_agent.cli import supervise as supervise_cli

node_app = typer.Typer(
    name="anywhere-agent",
    help="Put on-prem servers into Amazon ECS clusters with ECS Anywhere, and keep them there.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@node_app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging to stderr."),
    version: bool = typer.Option(False, "--version", help="Print versions and exit."),
) -> None:
    logs.configure(verbose)
    if version:
        from anywhere_agent.host.gateway import Host
        from anywhere_agent.host.versions import render, versions

        print(render(versions(Host("/"))))
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(0)


node_app.command("preflight")(node.preflight)
node_app.command("install")(node.install)
node_app.command("status")(node.status)
node_app.command("uninstall")(node.uninstall)


@node_app.command("exit-codes")
def exit_codes(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the exit codes every command uses (health uses Nagios 0-3)."""
    rows = output.exit_code_rows()
    print(output.to_json(rows) if as_json else output.table(rows, ["code", "name"]))


@node_app.command("health", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})
def health(ctx: typer.Context) -> None:
    """Health for monitoring: --format nagios|json|prometheus (Nagios exit codes 0-3)."""
    from anywhere_agent.cli.health import main as health_main

    raise typer.Exit(health_main(list(ctx.args)))


@node_app.command("supervise")
def supervise(
    config: Optional[str] = typer.Option(None, "--config", metavar="PATH",
                                         help="agent.toml to read"),
    once: bool = typer.Option(False, "--once", help=supervise_cli.ONCE_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
) -> None:
    """Supervise the ECS and SSM agents and publish the node's health (run by systemd)."""
    code = supervise_cli.serve(config, once=once, verbose=verbose)
    if code:
        raise typer.Exit(code)


# Commands that never need the central or lab groups. They run on every host of a rollout and
# on every re-run, so they do not import those groups (the registrar's pulls in boto3: ~0.2 s
# of a re-run that may not call AWS at all). cli/entry.py picks them by the first argument.
NODE_COMMANDS = frozenset({"preflight", "install", "status", "uninstall", "exit-codes"})
_mounted: list[bool] = []


def mount_all() -> typer.Typer:
    """The whole command tree: node commands plus support-bundle, bundle, registrar and lab."""
    if _mounted:
        return node_app
    from anywhere_agent.cli import bundle, lab, registrar, support

    node_app.command("support-bundle")(support.support_bundle)
    node_app.command("bundle")(bundle.bundle)
    node_app.add_typer(registrar.app, name="registrar",
                       help="Central side: IAM role, cluster, activations, fleet, prune, wait.")
    node_app.add_typer(lab.app, name="lab",
                       help="The local lab: control plane and systemd hosts.")
    _mounted.append(True)
    return node_app


def __getattr__(name: str) -> Any:
    # `from anywhere_agent.cli.main import app` keeps meaning every command.
    if name == "app":
        return mount_all()
    raise AttributeError(name)
