"""`anywhere-agent registrar`: host role and cluster, activations, fleet view, prune, wait."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Annotated, Any, Optional

import typer

from anywhere_agent.cli import logs
from anywhere_agent.cli.output import is_tty, print_table, run, table, to_json
from anywhere_agent.errors import RefusedError, UsageError
from anywhere_agent.registrar import (
    activations,
    deregister,
    drain,
    ensure,
    fleet,
    inputs,
    prune,
    wait,
)
from anywhere_agent.registrar import inventory as fleet_inventory
from anywhere_agent.registrar.session import fleet_clients, make_clients

app = typer.Typer(help="Central side: IAM role and cluster, activations, fleet view, prune, wait.",
                  no_args_is_help=True)

# Option types shared by several commands (typer reads the help from the annotation).
Region = Annotated[Optional[str], typer.Option(
    help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / the profile's).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (stable snake_case keys).")]
Clusters = Annotated[Optional[list[str]], typer.Option(
    "--cluster", help="ECS cluster name or ARN; repeat for several (default: every cluster).")]
Role = Annotated[str, typer.Option(help="IAM role the hosts assume through SSM.")]


@app.command("ensure")
def ensure_cmd(
    role: Role = ensure.DEFAULT_ROLE,
    cluster: Annotated[str, typer.Option(help="ECS cluster the hosts join.")] = (
        ensure.DEFAULT_CLUSTER),
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Create the hosts' IAM role and the ECS cluster if missing; fix them if wrong."""
    def body() -> None:
        result = ensure.ensure(make_clients(region), role=role, cluster=cluster)
        if as_json:
            print(to_json(result.to_dict()))
            return
        for res in (result.role, result.cluster):
            what = "; ".join(res.changes) if res.changes else "unchanged"
            print(f"{res.kind} {res.name}: {what}")
    run(body, as_json)


@app.command("activate")
def activate_cmd(
    count: Annotated[int, typer.Option(
        help="Hosts the rollout registers (split past 1,000; more than SSM's standard-tier "
             "1,000 nodes needs --yes).")],
    output: Annotated[Optional[str], typer.Option(
        help="Where the codes go: a new 0600 file, or - for JSON on standard output.")] = None,
    expires: Annotated[str, typer.Option(help="Lifetime: 30m, 2h, 7d (at most 30d).")] = "2h",
    name_prefix: Annotated[str, typer.Option(
        help="Default instance name for registered hosts.")] = "",
    tag: Annotated[Optional[list[str]], typer.Option(
        help="Extra tag key=value; repeat for several (at most 48: AWS allows 50 and two "
             "are anywhere-agent's).")] = None,
    rollout: Annotated[str, typer.Option(help="Rollout ID to tag with (default: a new one).")] = "",
    role: Role = ensure.DEFAULT_ROLE,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Confirm a --count above SSM's standard-tier 1,000 nodes.")] = False,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Create activations covering --count hosts; the codes go only to --output."""
    def body() -> None:
        n = inputs.parse_count(count, yes)
        lifetime = inputs.parse_expiry(expires)
        tags = inputs.parse_tags(tag or [], ours=len(activations.OWN_TAGS))
        if not output:
            raise UsageError("--output is required",
                             "--output FILE (created 0600) or --output - (JSON on stdout)")
        made = activations.create(make_clients(region), n, lifetime, output, sys.stdout,
                                  role=role, name_prefix=name_prefix, tags=tags,
                                  rollout=rollout, redactor=logs.redactor())
        if output == "-":
            return  # standard output already carries the JSON with the codes
        if as_json:
            print(to_json({"output": output, "rollout": made[0].rollout,
                           "activations": [a.to_dict() for a in made]}))
        else:
            print(table([a.to_dict() for a in made],
                        ["activation_id", "registration_limit", "expires_at", "rollout"]))
            print(f"codes written to {output} (mode 0600)")
    run(body, as_json)


@app.command("revoke")
def revoke_cmd(
    activation_id: Annotated[Optional[list[str]], typer.Option(
        help="Activation ID; repeat for several.")] = None,
    rollout: Annotated[str, typer.Option(
        help="Delete every activation tagged with this rollout.")] = "",
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Delete activations by ID or by rollout (registered hosts stay registered)."""
    def body() -> None:
        result = activations.revoke(make_clients(region), activation_id or [], rollout)
        if as_json:
            print(to_json(result.to_dict()))
        else:
            print(f"deleted {len(result.deleted)} activations"
                  + (f"; not found: {', '.join(result.not_found)}" if result.not_found else ""))
    run(body, as_json)


FLEET_COLUMNS = ("name", "instance_id", "ping_status", "ping_age_s", "agent_version",
                 "ecs_agent_version", "region", "cluster", "container_instance_status",
                 "agent_connected", "running_tasks", "health", "flags")
Regions = Annotated[Optional[list[str]], typer.Option(
    "--region", help="AWS region; several as a,b or by repeating the option, read side by side "
                     "(default: AWS_REGION / AWS_DEFAULT_REGION / the profile's).")]
AllClusters = Annotated[bool, typer.Option(
    "--all-clusters", help="Every cluster of every region (the default without --cluster).")]
OfflineAfter = Annotated[str, typer.Option(help="Flag hosts without a ping for this long.")]


def _read_fleet(cluster: Optional[list[str]], all_clusters: bool, offline_after: str,
                region: Optional[list[str]]) -> fleet.Fleet:
    if all_clusters and cluster:
        raise UsageError("--all-clusters and --cluster contradict each other",
                         "give one of them")
    threshold = inputs.parse_duration(offline_after, "--offline-after")
    return fleet.read(fleet_clients(region or []), cluster or [], threshold)


@app.command("fleet")
def fleet_cmd(
    cluster: Clusters = None,
    all_clusters: AllClusters = False,
    offline_after: OfflineAfter = "1h",
    region: Regions = None,
    as_json: AsJson = False,
) -> None:
    """One row per host, joining SSM and ECS on the mi- ID, with flags and a summary.

    With --cluster the view is exact: managed instances in other clusters (or none) are
    counted, not listed. Regions and clusters are read side by side, each at its pagination minimum.
    """
    def body() -> None:
        view = _read_fleet(cluster, all_clusters, offline_after, region)
        if as_json:
            sys.stdout.writelines(view.json_chunks())
            sys.stdout.write("\n")
            return
        print_table(lambda: ({**h.to_dict(), "flags": ",".join(h.flags)} for h in view.hosts),
                     FLEET_COLUMNS)
        print(view.summary_line())
    run(body, as_json)


@app.command("inventory")
def inventory_cmd(
    fmt: Annotated[str, typer.Option(
        "--format", help="ansible: dynamic-inventory JSON (_meta.hostvars and groups).")
    ] = "ansible",
    cluster: Clusters = None,
    all_clusters: AllClusters = False,
    offline_after: OfflineAfter = "1h",
    region: Regions = None,
) -> None:
    """An Ansible inventory from the fleet view: groups by cluster, region, status, flag and
    agent version; each host's address as SSM reports it (see ansible/inventory/fleet.sh)."""
    def body() -> None:
        if fmt != "ansible":
            raise UsageError(f"--format {fmt!r} is not supported", "use --format ansible")
        view = _read_fleet(cluster, all_clusters, offline_after, region)
        print(to_json(fleet_inventory.ansible(view)))
    # Errors go to standard error as one line: Ansible reads standard output as the inventory.
    run(body, False)


@app.command("prune")
def prune_cmd(
    cluster: Clusters = None,
    offline_for: Annotated[str, typer.Option(
        help="Remove hosts without a ping for this long.")] = "7d",
    duplicates: Annotated[bool, typer.Option(help="Also remove all but the best registration "
                                                "of each computer name.")] = False,
    force: Annotated[bool, typer.Option(
        help="Deregister container instances even with running tasks.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only show what would be removed.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Remove without asking.")] = False,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Deregister stale and duplicate identities on both sides; delete expired activations.

    With --cluster only hosts with a container instance in those clusters are considered:
    a managed instance in another cluster, or in none, is never removed by it.

    Without --yes it only shows the plan when standard input is not a terminal.
    """
    def body() -> None:
        if dry_run and yes:
            raise UsageError("--dry-run and --yes contradict each other", "give one of them")
        age = inputs.parse_duration(offline_for, "--offline-for")
        clients = make_clients(region)
        plan = prune.make_plan(clients, cluster or [], age, duplicates, force)
        only_show = dry_run or (not yes and not is_tty(sys.stdin))
        if not only_show and not yes and plan.actions:
            # Only reached on a terminal: ask, showing exactly what would go.
            if as_json:
                raise RefusedError("prune --json needs --yes to change anything",
                                   "pass --yes, or --dry-run to see the plan")
            print(table([a.__dict__ for a in plan.actions], ["kind", "target", "host", "reason"]))
            if not typer.confirm(f"apply these {len(plan.actions)} actions?", default=False):
                raise RefusedError("prune not confirmed", "answer y, or pass --yes")
        result = prune.apply(clients, plan, only_show)
        if as_json:
            print(to_json(result.to_dict()))
            return
        if only_show:
            if plan.actions:
                print(table([a.__dict__ for a in plan.actions],
                            ["kind", "target", "host", "reason"]))
            print(f"dry run: {len(plan.actions)} actions planned, nothing changed "
                  "(pass --yes to apply)")
        else:
            print(f"pruned: {len(result.done)} done, {len(result.already_gone)} already gone")
        for s in plan.skipped:
            print(f"skipped {s.host} ({s.instance_id}): {s.reason}")
        if plan.outside_clusters:
            print(f"not considered: {plan.outside_clusters} managed instances with no "
                  "container instance in --cluster (another cluster's, or none)")
    run(body, as_json)


@app.command("deregister")
def deregister_cmd(
    instance_ids: Annotated[list[str], typer.Argument(
        help="Managed instance IDs (mi-...) of the hosts to remove.", show_default=False)],
    cluster: Clusters = None,
    force: Annotated[bool, typer.Option(
        help="Deregister container instances even with running tasks.")] = False,
    region: Region = None,
    as_json: AsJson = False,
) -> None:
    """Remove hosts centrally: their container instances, then their SSM registrations.

    What a decommissioned host cannot remove with its own rights; already gone counts as done.
    """
    def body() -> None:
        result = deregister.deregister(make_clients(region), instance_ids, cluster or [], force)
        if as_json:
            print(to_json(result.to_dict()))
            return
        for action in result.done:
            print(f"{action.kind.replace('_', ' ')}: {action.target}")
        print(f"deregistered: {len(result.done)} done, {len(result.already_gone)} already gone")
    run(body, as_json)


Hosts = Annotated[str, typer.Option(help="Comma-separated host names or mi- IDs.")]
Interval = Annotated[str, typer.Option(
    help="Longest time between polls (they start 0.5 s apart and double up to it).")]


def _poll_args(hosts: str, timeout: str, interval: str) -> tuple[list[str], timedelta, float]:
    """The hosts, the bound and the poll interval shared by wait and drain."""
    return (inputs.parse_hosts(hosts), inputs.parse_duration(timeout, "--timeout"),
            inputs.parse_duration(interval, "--interval").total_seconds())


def _report(as_json: bool, key: str, rows: Sequence[Any], line: str) -> None:
    """`{key: true, "hosts": [...]}` as JSON, else the one line."""
    print(to_json({key: True, "hosts": [r.to_dict() for r in rows]}) if as_json else line)


def _names(rows: Sequence[Any]) -> str:
    return ", ".join(sorted({r.host for r in rows}))


def _poll(poll: Callable[..., Sequence[Any]], key: str, line: Callable[[Sequence[Any]], str],
          hosts: str, timeout: str, interval: str, cluster: Optional[list[str]],
          region: Optional[str], as_json: bool) -> None:
    """wait and drain: parse, poll (bounded), report."""
    def body() -> None:
        wanted, limit, every = _poll_args(hosts, timeout, interval)
        rows = poll(make_clients(region), wanted, limit, cluster or [], every)
        _report(as_json, key, rows, line(rows))
    run(body, as_json)


@app.command("wait")
def wait_cmd(hosts: Hosts, timeout: Annotated[str, typer.Option(
                 help="Give up after this long: 90s, 10m, 1h.")] = "10m",
             cluster: Clusters = None, interval: Interval = "5s", region: Region = None,
             as_json: AsJson = False) -> None:
    """Return when every host is Online in SSM, ACTIVE in ECS and agentConnected."""
    _poll(wait.wait, "ready", lambda rows: f"{len(rows)} hosts ready: "
          f"{', '.join(r.host for r in rows)}", hosts, timeout, interval, cluster, region, as_json)


@app.command("drain")
def drain_cmd(hosts: Hosts, timeout: Annotated[str, typer.Option(
                  help="Wait this long for tasks to leave.")] = "10m",
              cluster: Clusters = None, interval: Interval = "5s", region: Region = None,
              as_json: AsJson = False) -> None:
    """Set hosts DRAINING and wait (bounded) until they run no tasks."""
    _poll(drain.drain, "drained", lambda rows: f"{len(rows)} container instances drained: "
          f"{_names(rows)}", hosts, timeout, interval, cluster, region, as_json)


@app.command("undrain")
def undrain_cmd(
    hosts: Hosts, cluster: Clusters = None, region: Region = None, as_json: AsJson = False,
) -> None:
    """Set hosts' container instances ACTIVE again (after maintenance, or a failed upgrade)."""
    def body() -> None:
        done = drain.undrain(make_clients(region), inputs.parse_hosts(hosts), cluster or [])
        _report(as_json, "active", done, f"{len(done)} container instances ACTIVE: {_names(done)}")
    run(body, as_json)
