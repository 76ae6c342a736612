"""The `anywhere-agent` command: wiring only; each noun lives in its own module."""

from __future__ import annotations

from typing import Optional

import typer

from anywhere_agent.cli import logs, node, output
from anywhere_agent.cli import supervise as supervise_cli

app = typer.Typer(
    name="anywhere-agent",
    help="Put on-prem servers into Amazon ECS clusters with ECS Anywhere, and keep them there.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback(invoke_without_command=True)
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


app.command("preflight")(node.preflight)
app.command("install")(node.install)
app.command("status")(node.status)
app.command("uninstall")(node.uninstall)


@app.command("exit-codes")
def exit_codes(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the exit codes every command uses (health uses Nagios 0-3)."""
    rows = output.exit_code_rows()
    print(output.to_json(rows) if as_json else output.table(rows, ["code", "name"]))


@app.command("health", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})
def health(ctx: typer.Context) -> None:
    """Health for monitoring: --format nagios|json|prometheus (Nagios exit codes 0-3)."""
    from anywhere_agent.cli.health import main as health_main

    raise typer.Exit(health_main(list(ctx.args)))


@app.command("supervise")
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


def _mount() -> None:
    from anywhere_agent.cli import bundle, lab, registrar, support

    app.command("support-bundle")(support.support_bundle)

    app.command("bundle")(bundle.bundle)
    app.add_typer(registrar.app, name="registrar",
                  help="Central side: IAM role, cluster, activations, fleet, prune, wait.")
    app.add_typer(lab.app, name="lab", help="The local lab: control plane and systemd hosts.")


_mount()
