"""`anywhere-agent lab`: a local control plane and real systemd hosts to rehearse rollouts on."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from anywhere_agent.cli.output import run, table, to_json

app = typer.Typer(
    name="lab",
    help=(
        "A local ECS Anywhere lab: a control plane (moto + extension), an apt repo with agent "
        "doubles, and N systemd-nspawn hosts reachable by ssh. Needs root, systemd-container, "
        "debootstrap and iproute2."
    ),
    no_args_is_help=True,
)

NameOpt = typer.Option("aalab", "--name", "-n", help="Lab name; scopes every resource.")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of text.")

HOST_COLUMNS = ("name", "ip", "running", "systemd", "ssh", "pss_kib", "rss_kib", "faults")


def _lab(
    name: str, region: str = "us-east-1", subnet: Optional[int] = None, time_scale: float = 1.0
) -> Any:
    # Imported here so `anywhere-agent --help` does not pay for the lab's imports.
    from anywhere_agent.lab.orchestrator import Lab

    return Lab(name=name, region=region, subnet_octet=subnet, time_scale=time_scale)


@app.command("up")
def up(
    hosts: int = typer.Option(3, "--hosts", min=1, max=240, help="How many hosts (n1..nN)."),
    name: str = NameOpt,
    region: str = typer.Option("us-east-1", "--region", help="Region the control plane serves."),
    subnet: Optional[int] = typer.Option(
        None,
        "--subnet",
        min=16,
        max=250,
        help="X of the lab subnet 10.213.X.0/24 (default: derived from the name).",
    ),
    time_scale: float = typer.Option(
        1.0,
        "--time-scale",
        min=0.001,
        help="Lab seconds per real second, shared by the control plane and the agent doubles "
        "(20: a 5-minute SSM ping every 15 s; intervals keep their AWS values in lab time).",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Bring a lab up (cleaning a crashed one of the same name first).

    The first run builds the cached host image (about a minute); later runs take seconds.
    """
    info = run(lambda: _lab(name, region, subnet, time_scale).up(hosts), as_json)
    if as_json:
        typer.echo(to_json(info.to_dict()))
        return
    typer.echo(
        f"lab {info.name} up in {info.seconds.get('up_total', 0):.1f}s: "
        f"subnet {info.subnet}, control plane {info.control_plane_url}, "
        f"packages {info.package_url}"
    )
    typer.echo(table([h.__dict__ for h in info.hosts], ("name", "ip", "machine", "systemd")))
    typer.echo(
        f"ssh: ssh -i {info.ssh_key} root@{info.hosts[0].ip}   "
        f"ansible: anywhere-agent lab inventory --name {info.name} > hosts.ini"
    )


@app.command("status")
def status(name: str = NameOpt, as_json: bool = JsonOpt) -> None:
    """Show the lab's services and hosts (systemd state, ssh, memory, faults)."""
    data = run(lambda: _lab(name).status(), as_json)
    if as_json:
        typer.echo(to_json(data))
        return
    typer.echo(
        f"lab {data['name']}: {data['state']}"
        + (f", subnet {data['subnet']}" if data.get("subnet") else "")
    )
    for svc, info in (data.get("services") or {}).items():
        typer.echo(f"  {svc}: {'up' if info['alive'] else 'DOWN'} {info.get('url') or ''}")
    if data.get("hosts"):
        rows = [{**h, "faults": ",".join(h.get("faults") or []) or "-"} for h in data["hosts"]]
        typer.echo(table(rows, HOST_COLUMNS))


@app.command("inventory")
def inventory(name: str = NameOpt) -> None:
    """Print an Ansible INI inventory of the lab's hosts (root, lab key, no host-key checks)."""
    typer.echo(run(lambda: _lab(name).inventory()), nl=False)


@app.command("down")
def down(name: str = NameOpt, as_json: bool = JsonOpt) -> None:
    """Stop and remove everything the lab made: processes, mounts, namespaces, interfaces.

    Safe to run twice, and on a lab that crashed.
    """
    report = run(lambda: _lab(name).down(), as_json)
    if as_json:
        typer.echo(to_json(report))
    else:
        typer.echo(f"lab {name} down in {report['seconds']:.1f}s; nothing left behind")


@app.command("install")
def install(
    hosts: Annotated[
        Optional[list[str]], typer.Argument(help="Hosts to install on (default: all).")
    ] = None,
    name: str = NameOpt,
) -> None:
    """Install this checkout's anywhere-agent on lab hosts over ssh (pip wheel, no index)."""
    typer.echo(table(run(lambda: _lab(name).install_products(hosts or ())), ("host", "version")))


FAULT_HELP = """Switch a fault on (or off with --off).

\b
Host faults, on --host (default: all hosts):
  ecs-hang     the ECS agent stops answering introspection but keeps running
  ecs-crash    the ECS agent exits at start (a crash loop under systemd)
  ssm-stale    the SSM agent stops refreshing its credentials
Control-plane faults:
  throttle     throttling errors  at --rate for --service/--operation
  5xx          server errors (--status 500/502/503/504) at --rate
  latency      --latency-ms added at --rate
  deny         AccessDenied(Exception) at --rate, as for a role without the action
  expire-activation   expire --activation-id now
  deregister   deregister --host centrally (SSM DeregisterManagedInstance)
  acs-outage   refuse ACS to --host: agentConnected false until --off
"""


@app.command("fault", help=FAULT_HELP)
def fault(
    kind: str = typer.Argument(..., help="Fault kind (see above)."),
    host: Annotated[
        Optional[list[str]], typer.Option("--host", help="Host name; repeat for several.")
    ] = None,
    off: bool = typer.Option(False, "--off", help="Switch the fault off."),
    service: str = typer.Option("*", "--service", help="ssm, ecs, ... or * for all."),
    operation: str = typer.Option("*", "--operation", help="e.g. DescribeInstanceInformation."),
    rate: float = typer.Option(1.0, "--rate", min=0.0, max=1.0, help="Share of calls hit."),
    status_code: int = typer.Option(500, "--status", help="HTTP status of 5xx faults."),
    latency_ms: int = typer.Option(0, "--latency-ms", min=0, help="Latency to add."),
    activation_id: str = typer.Option("", "--activation-id", help="For expire-activation."),
    name: str = NameOpt,
    as_json: bool = JsonOpt,
) -> None:
    result = run(
        lambda: _lab(name).fault(
            kind,
            on=not off,
            hosts=host or (),
            service=service,
            operation=operation,
            rate=rate,
            status=status_code,
            latency_ms=latency_ms,
            activation_id=activation_id,
        ),
        as_json,
    )
    typer.echo(to_json(result))


@app.command("demo")
def demo(
    hosts: int = typer.Option(3, "--hosts", min=1, max=240, help="How many hosts to roll onto."),
    name: str = NameOpt,
    cluster: str = typer.Option("lab", "--cluster", help="ECS cluster the hosts join."),
    as_json: bool = JsonOpt,
) -> None:
    """Bring a lab up, roll the node agent onto every host and show the fleet and its health.

    Hosts get Docker from Debian (docker_source = distro, as on a real server); with several
    hosts the last keeps docker_source = none.
    """
    from anywhere_agent.lab import rollout

    data = run(lambda: {"lab": name, **rollout.demo(_lab(name), hosts, cluster)}, as_json)
    if as_json:
        typer.echo(to_json(data))
        return
    typer.echo(table(data["fleet"], ("name", "managed_instance", "ping", "ecs_status",
                                     "connected")))
    typer.echo("")
    for host, line in data["health"].items():
        typer.echo(f"{host}: {line}")
    typer.echo(f"\nthe lab stays up: `anywhere-agent lab status --name {name}`, "
               f"`anywhere-agent lab down --name {name}`")
