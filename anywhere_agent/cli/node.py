"""Node commands: preflight, install, status, uninstall (run on the server, as root)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from anywhere_agent.cli import output
from anywhere_agent.config import Config, load_config
from anywhere_agent.errors import ActivationError, PreflightError, UsageError
from anywhere_agent.host.gateway import Host, PackageManager
from anywhere_agent.host.platform import Platform, detect, uname_machine
from anywhere_agent.secret import REDACTOR, Secret

CODE_ENV = "ANYWHERE_AGENT_ACTIVATION_CODE"

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


def _platform(host: Host) -> Platform:
    text = host.read_text("/etc/os-release") or host.read_text("/usr/lib/os-release") or ""
    return detect(text, uname_machine())


def _context(cfg: Config, host: Host, activation: Any = None, reregister: bool = False) -> Any:
    from anywhere_agent.install.context import InstallContext, default_clients_factory
    from anywhere_agent.install.journal import Journal
    from anywhere_agent.install.sources import PackageSource

    platform = _platform(host)
    pm = PackageManager(host, platform.package_manager, cfg.proxy.environment())
    return InstallContext(cfg=cfg, host=host, platform=platform, journal=Journal(host),
                   source=PackageSource(cfg, host, platform, pm), activation=activation,
                   force_reregister=reregister, clients_factory=default_clients_factory(cfg))


def _read_code(code_file: Optional[str]) -> Optional[Secret]:
    """The activation code from a file, `-` (standard input) or the environment, never argv."""
    raw: Optional[str] = None
    if code_file == "-":
        where = "standard input"
        try:
            # `<&-` leaves no stdin at all (None); a closed or unreadable one raises.
            raw = sys.stdin.read() if sys.stdin is not None else None
        except (OSError, ValueError):
            raw = None
        if raw is None:
            raise ActivationError("--activation-code-file - was given but standard input is "
                                  "closed", "pipe the code in (`... --activation-code-file - "
                                  "< FILE`) or pass the file's path instead of -")
    elif code_file:
        try:
            raw = Path(code_file).read_text(encoding="utf-8")
            mode = Path(code_file).stat().st_mode & 0o777
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or "not UTF-8 text"
            raise ActivationError(f"cannot read activation code file {code_file}: "
                                  f"{reason}", "check the path and permissions") from None
        if mode & 0o077:
            # Not refused: the code may already have leaked, and refusing would not undo that.
            print(f"warning: activation code file {code_file} is readable by other users "
                  f"(mode {mode:04o}); `chmod 600 {code_file}`, or pipe the code on standard "
                  "input, and consider revoking this activation after install",
                  file=sys.stderr)
        where = code_file
    elif os.environ.get(CODE_ENV) is not None:
        raw = os.environ[CODE_ENV]
        where = CODE_ENV
    if raw is None:
        return None
    code = raw.strip()
    if not code:
        raise ActivationError(f"the activation code from {where} is empty",
                              "put the ActivationCode from `registrar activate` there")
    secret = Secret(code)
    REDACTOR.add(secret)
    return secret


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


def _run_preflight(cfg: Config, host: Host, network: bool = True) -> Any:
    from anywhere_agent.preflight import run_preflight

    return run_preflight(cfg, host, dict(os.environ), euid=os.geteuid(), machine=uname_machine(),
                         network=network)


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
    with output.errors_to_exit(as_json):
        cfg = _config(root, config, _flags(region=region, cluster=cluster, enable_gpu=enable_gpu,
                                           certs_file=certs_file))
        report = _run_preflight(cfg, Host(root), network=not no_network)
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
    http_proxy: Optional[str] = typer.Option(None, "--http-proxy"),
    https_proxy: Optional[str] = typer.Option(None, "--https-proxy"),
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
    with output.errors_to_exit(as_json):
        if activation_code is not None:
            raise UsageError("the activation code must not be given on the command line "
                             "(it shows in ps and shell history)",
                             f"use --activation-code-file FILE, --activation-code-file - or "
                             f"{CODE_ENV}; consider revoking this activation")
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
        cfg = _config(root, config, flags)
        cfg.require_region()
        code = _read_code(activation_code_file)
        host = Host(root)
        if not skip_preflight and not dry_run:
            report = _run_preflight(cfg, host)
            if not report.ok:
                first = report.failed[0]
                raise PreflightError(f"preflight failed: {first.summary}"
                                     + (f" (+{len(report.failed) - 1} more)"
                                        if len(report.failed) > 1 else ""),
                                     first.fix or "run `anywhere-agent preflight` for details")
        from anywhere_agent.install.apply import Progress, apply, plan, render_plan
        from anywhere_agent.install.context import Activation
        from anywhere_agent.install.steps import RegistrationStep

        activation = None
        if code is not None:
            if not cfg.activation_id:
                raise ActivationError("an activation code was given without its activation ID",
                                      "pass --activation-id or set activation_id in agent.toml")
            activation = Activation(cfg.activation_id, code)
        ctx = _context(cfg, host, activation, reregister)
        if dry_run:
            planned = plan(ctx)
            if as_json:
                print(output.to_json({"dry_run": True, "steps": [p.to_dict() for p in planned]}))
            else:
                print(render_plan(planned))
            return
        if activation is None:
            delta = RegistrationStep().check(ctx)
            if delta is not None and not delta.data.get("adopt"):
                raise ActivationError(
                    f"this host needs an SSM registration ({delta.data['reason']}) but no "
                    "activation code was given",
                    f"pass --activation-id and --activation-code-file (or {CODE_ENV})")
        _terminate_as_exception()
        outcome = apply(ctx, Progress(sys.stderr))
        if as_json:
            print(output.to_json(outcome.to_dict()))
        else:
            verdict = "changed" if outcome.changed else "already converged"
            ident = ctx.journal.identity
            print(f"install ok ({verdict}, {outcome.seconds:.1f} s): "
                  f"{ident.get('managed_instance_id', '')} "
                  f"{ident.get('container_instance_arn', '')}".rstrip())
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
    from anywhere_agent.node.uninstall import uninstall as run_uninstall

    with output.errors_to_exit(as_json):
        cfg = _config(root, config, {})
        host = Host(root)
        ctx = _context(cfg, host)
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
