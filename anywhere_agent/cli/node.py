"""Node commands: preflight, install, status, uninstall (run on the server, as root)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from anywhere_agent.cli import logs, output
from anywhere_agent.config import ACTIVATION_CODE_ENV as CODE_ENV
from anywhere_agent.config import Config, load_config
from anywhere_agent.errors import PreflightError
from anywhere_agent.host.gateway import Host
from anywhere_agent.node.argv import refuse_code_on_argv, refuse_proxy_credentials

# Shared options (typer needs them spelled per command; these keep the spelling in one place).
ConfigOpt = typer.Option(None, "--config",
                         help="agent.toml to read [/etc/anywhere-agent/agent.toml]")
RootOpt = typer.Option("/", "--root", hidden=True, help="Operate on this root (tests, chroots).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object.")
RegionOpt = typer.Option(None, "--region", help="AWS region of the activation and cluster.")
ClusterOpt = typer.Option(None, "--cluster", help="ECS cluster to join [default].")


def _flags(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None and v != []}


def _config(root: str, path: Optional[str], flags: dict[str, Any]) -> Config:
    return load_config(Path(root), dict(os.environ), flags, path)


class Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP during install: unwinds like Ctrl-C, so the run is journaled as
    interrupted and a contained child (the one holding the activation code) is killed first;
    `signum` gives the exit code (128 + it: 143 for SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate_as_exception() -> None:
    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_terminated)


def preflight(
    config: Optional[str] = ConfigOpt,
    region: Optional[str] = RegionOpt,
    cluster: Optional[str] = ClusterOpt,
    no_network: bool = typer.Option(False, "--no-network", help="Skip reachability probes."),
    enable_gpu: Optional[bool] = typer.Option(
        None, "--enable-gpu/--no-enable-gpu",
        help="Also check nvidia-smi and its driver, the NVIDIA container runtime and "
             "Docker's nvidia runtime (on with enable_gpu in agent.toml)."),
    certs_file: Optional[str] = typer.Option(
        None, "--certs-file", help="CA bundle for ECS Exec (default: the first known location)."),
    as_json: bool = JsonOpt,
    root: str = RootOpt,
) -> None:
    """Check this host can join ECS Anywhere; each failed check prints its fix (exit 4)."""
    from anywhere_agent.node.install import run_preflight

    with output.errors_to_exit(as_json):
        cfg = _config(root, config, _flags(region=region, cluster=cluster, enable_gpu=enable_gpu,
                                           certs_file=certs_file))
        report = run_preflight(cfg, Host(root), network=not no_network)
        if as_json:
            print(output.to_json(report.to_dict()))
        else:
            print(report.render_text(color=output.is_tty()))
        if not report.ok:
            raise SystemExit(int(PreflightError.exit_code))


def install(
    config: Optional[str] = ConfigOpt,
    region: Optional[str] = RegionOpt,
    cluster: Optional[str] = ClusterOpt,
    activation_id: Optional[str] = typer.Option(None, "--activation-id",
                                                help="ActivationId (not secret)."),
    activation_code_file: Optional[str] = typer.Option(
        None, "--activation-code-file",
        help=f"File holding the activation code, or - for standard input (or set {CODE_ENV})."),
    activation_code: Optional[str] = typer.Option(
        None, "--activation-code", hidden=True,
        help="Refused: a code on the command line leaks through ps and shell history."),
    package_source: Optional[str] = typer.Option(None, "--package-source",
                                                 help="aws | repo | bundle"),
    bundle_dir: Optional[str] = typer.Option(None, "--bundle-dir"),
    docker_source: Optional[str] = typer.Option(None, "--docker-source",
                                                help="distro | docker | none"),
    enable_gpu: Optional[bool] = typer.Option(
        None, "--enable-gpu/--no-enable-gpu",
        help="GPU host: preflight checks the NVIDIA driver, container runtime and Docker's "
             "nvidia runtime; sets ECS_ENABLE_GPU_SUPPORT=true."),
    certs_file: Optional[str] = typer.Option(
        None, "--certs-file",
        help="CA bundle copied for ECS Exec (default: the first of the distribution's "
             "known locations)."),
    ecs_agent_version: Optional[str] = typer.Option(
        None, "--ecs-agent-version",
        help="Pin amazon-ecs-init to this version (e.g. 1.105.1); install moves a host on "
             "another version to it, downgrading if need be. Empty: the latest."),
    ssm_agent_version: Optional[str] = typer.Option(
        None, "--ssm-agent-version",
        help="Pin amazon-ssm-agent to this version (e.g. 3.3.1802.0). Empty: the latest."),
    attribute: list[str] = typer.Option([], "--attribute", help="ECS attribute KEY=VALUE."),
    tag: list[str] = typer.Option([], "--tag", help="Container instance tag KEY=VALUE."),
    http_proxy: Optional[str] = typer.Option(
        None, "--http-proxy", help="Proxy URL without credentials (refused: a password here "
        "shows in ps); one with a password goes in agent.toml or ANYWHERE_AGENT_HTTP_PROXY."),
    https_proxy: Optional[str] = typer.Option(
        None, "--https-proxy", help="As --http-proxy, for HTTPS (ANYWHERE_AGENT_HTTPS_PROXY)."),
    no_proxy: Optional[str] = typer.Option(None, "--no-proxy"),
    reregister: bool = typer.Option(False, "--reregister",
                                    help="Register again even if the current one looks valid."),
    skip_preflight: bool = typer.Option(False, "--skip-preflight",
                                        help="Do not run preflight first (not recommended)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    as_json: bool = JsonOpt,
    root: str = RootOpt,
) -> None:
    """Install and register this host, converging on every run; ends by proving the join."""
    from anywhere_agent.install.apply import Progress
    from anywhere_agent.node import install as node_install
    from anywhere_agent.node.activation import activation, read_code

    with output.errors_to_exit(as_json):
        if activation_code is not None:
            raise refuse_code_on_argv()
        flags = _flags(region=region, cluster=cluster, activation_id=activation_id,
                       package_source=package_source, bundle_dir=bundle_dir,
                       docker_source=docker_source, enable_gpu=enable_gpu,
                       certs_file=certs_file,
                       ecs_agent_version=ecs_agent_version,
                       ssm_agent_version=ssm_agent_version,
                       ecs_attributes=",".join(attribute) or None,
                       ecs_tags=",".join(tag) or None,
                       **{"proxy.http": http_proxy, "proxy.https": https_proxy,
                          "proxy.no_proxy": no_proxy})
        refuse_proxy_credentials(flags)
        cfg = _config(root, config, flags)
        cfg.require_region()
        code = read_code(activation_code_file, os.environ, logs.redactor())
        host = Host(root)
        node_install.preload_boto3()
        if not skip_preflight and not dry_run:
            node_install.require_preflight(cfg, host)
        act = activation(cfg, code)
        if dry_run:
            data, text = node_install.dry_run(cfg, host, act, reregister)
            print(output.to_json(data) if as_json else text)
            return
        _terminate_as_exception()
        outcome, line = node_install.install(cfg, host, act, reregister, Progress(sys.stderr))
        if as_json:
            print(output.to_json(outcome.to_dict()))
        else:
            print(line)
            for note in outcome.notes:
                print(f"note: {note}")


def status(
    config: Optional[str] = ConfigOpt,
    as_json: bool = JsonOpt,
    root: str = RootOpt,
) -> None:
    """Show this node's identity, cluster, agent versions (installed against pinned), services
    and last install."""
    from anywhere_agent.node.status import gather, render_text

    with output.errors_to_exit(as_json):
        cfg = _config(root, config, {})
        st = gather(cfg, Host(root))
        print(output.to_json(st) if as_json else render_text(st))


def uninstall(
    config: Optional[str] = ConfigOpt,
    keep_packages: bool = typer.Option(False, "--keep-packages",
                                       help="Leave the SSM agent and ecs-init installed."),
    force: bool = typer.Option(False, "--force", help="Uninstall even with running tasks."),
    force_local: bool = typer.Option(False, "--force-local",
                                     help="Clean up locally even if deregistration cannot run."),
    as_json: bool = JsonOpt,
    root: str = RootOpt,
) -> None:
    """Deregister this host on both sides, stop its agents and remove what install wrote."""
    from anywhere_agent.install.context import build_context
    from anywhere_agent.node.uninstall import uninstall as run_uninstall

    with output.errors_to_exit(as_json):
        cfg = _config(root, config, {})
        host = Host(root)
        ctx = build_context(cfg, host)
        result = run_uninstall(ctx, keep_packages=keep_packages, force=force,
                               force_local=force_local)
        if as_json:
            print(output.to_json(result.to_dict()))
        else:
            for item in result.done:
                print(f"done: {item}")
            for item in result.left_in_cloud:
                print(f"left in the cloud: {item}")
            if result.central_command:
                print(f"remove it centrally with the registrar's rights: "
                      f"{result.central_command}")
