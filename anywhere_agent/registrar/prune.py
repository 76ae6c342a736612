"""Prune: plan (purely) which stale or duplicate identities and expired activations go; apply."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import botocore.exceptions

from anywhere_agent.aws.clients import Clients, error_code, translate
from anywhere_agent.errors import PartialFailure
from anywhere_agent.registrar import activations, fleet
from anywhere_agent.registrar.fleet import FleetRow

LOG = logging.getLogger(__name__)

# Errors that mean "already gone": a second prune (or a race with another one) is not a failure.
_GONE = frozenset({"InvalidInstanceId", "InvalidActivationId", "InvalidActivation",
         "ClusterNotFoundException", "ResourceNotFoundException"})


@dataclass(frozen=True)
class Action:
    kind: str  # deregister_managed_instance | deregister_container_instance | delete_activation
    target: str  # mi- ID, container instance ARN or activation ID
    host: str  # the host's name, or the activation's rollout
    reason: str
    cluster: str = ""  # for container instances
    force: bool = False


@dataclass(frozen=True)
class Skipped:
    host: str
    instance_id: str
    reason: str


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    outside_clusters: int = 0  # managed instances left out because clusters were named


@dataclass
class PruneResult:
    dry_run: bool
    plan: Plan
    done: list[Action] = field(default_factory=list)
    already_gone: list[Action] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "actions": [asdict(a) for a in self.plan.actions],
            "skipped": [asdict(s) for s in self.plan.skipped],
            "outside_clusters": self.plan.outside_clusters,
            "done": len(self.done),
            "already_gone": len(self.already_gone),
        }


def _keeper(group: Sequence[FleetRow]) -> FleetRow:
    """Which of several registrations of one computer to keep: online, then most recent ping."""
    def rank(h: FleetRow) -> tuple[int, int, float]:
        ping = h.last_ping.timestamp() if h.last_ping else 0.0
        return (h.ping_status == "Online", bool(h.agent_connected), ping)
    return max(group, key=rank)


def _remove_host(plan: Plan, h: FleetRow, reason: str, force: bool) -> None:
    if h.in_ecs and (h.running_tasks or 0) > 0 and not force:
        plan.skipped.append(Skipped(h.name, h.instance_id,
                                    f"{reason}, but has {h.running_tasks} running tasks "
                                    "(stop them, or prune with --force)"))
        return
    if h.in_ecs:
        # An unreachable agent cannot acknowledge a normal deregistration; force is safe
        # here because nothing runs on it (or the operator said --force).
        plan.actions.append(Action("deregister_container_instance", h.container_instance_arn,
                                   h.name, reason, cluster=h.cluster, force=True))
    if h.in_ssm:
        plan.actions.append(Action("deregister_managed_instance", h.instance_id, h.name,
                                   reason))


def plan(hosts: Iterable[FleetRow], activation_list: Iterable[Mapping[str, Any]],
         offline_for: timedelta, duplicates: bool, force: bool) -> Plan:
    """Pure: which identities and activations to remove, and which to leave and why."""
    hosts = list(hosts)
    result = Plan()
    chosen: set[int] = set()
    limit = int(offline_for.total_seconds())
    for h in hosts:
        stale_ssm = h.in_ssm and h.ping_status != "Online" and (
            h.ping_age_s is None or h.ping_age_s > limit)
        # ECS-only with no agent: its SSM identity is gone, so it can never reconnect.
        stale_ecs = not h.in_ssm and not h.agent_connected
        if stale_ssm or stale_ecs:
            why = (f"{h.ping_status or 'no ping'} for more than {limit}s" if stale_ssm
                   else "in ECS only and its agent is disconnected")
            _remove_host(result, h, why, force)
            chosen.add(id(h))
    if duplicates:
        groups: defaultdict[str, list[FleetRow]] = defaultdict(list)
        for h in hosts:
            if h.computer_name and h.in_ssm:
                groups[h.computer_name.lower()].append(h)
        for group in groups.values():
            if len({h.instance_id for h in group}) < 2:
                continue
            keep = _keeper(group)
            for h in group:
                if h is not keep and h.instance_id != keep.instance_id and id(h) not in chosen:
                    _remove_host(result, h, f"duplicate of {keep.instance_id}", force)
                    chosen.add(id(h))
    for a in activation_list:
        if a.get("Expired"):
            rollout = activations.tag_map(a).get(activations.TAG_ROLLOUT, "")
            result.actions.append(Action("delete_activation", a["ActivationId"], rollout,
                                         "expired"))
    return result


def _apply_one(clients: Clients, action: Action) -> None:
    if action.kind == "deregister_container_instance":
        clients.client("ecs").deregister_container_instance(
            cluster=action.cluster, containerInstance=action.target, force=action.force)
    elif action.kind == "deregister_managed_instance":
        clients.client("ssm").deregister_managed_instance(InstanceId=action.target)
    elif action.kind == "delete_activation":
        clients.client("ssm").delete_activation(ActivationId=action.target)
    else:  # pragma: no cover - plan() makes only the kinds above
        raise ValueError(action.kind)


PRUNE_AGAIN = "fix the cause and run prune again (it is idempotent)"


def apply(clients: Clients, the_plan: Plan, dry_run: bool, command: str = "prune",
          again: str = PRUNE_AGAIN) -> PruneResult:
    """Run each action independently; collect failures into one PartialFailure at the end,
    named for the `command` that planned them, whose fix is `again`."""
    result = PruneResult(dry_run, the_plan)
    if dry_run:
        return result
    errors: list[str] = []
    for action in the_plan.actions:
        try:
            _apply_one(clients, action)
            result.done.append(action)
            LOG.info("%s %s (%s): %s", action.kind, action.target, action.host, action.reason)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as err:
            if error_code(err) in _GONE:
                result.already_gone.append(action)
                continue
            agent_err = translate(err, f"{action.kind} {action.target}")
            if activations.fails_everything(err):
                raise agent_err from None
            errors.append(str(agent_err))
    if errors:
        raise PartialFailure(f"{command}: {len(errors)} of {len(the_plan.actions)} actions "
                             "failed", errors, again)
    return result


def make_plan(clients: Clients, clusters: Sequence[str] = (),
              offline_for: timedelta = timedelta(days=7), duplicates: bool = False,
              force: bool = False, now: datetime | None = None) -> Plan:
    """Read the fleet and the activations, then plan; touches nothing.

    With named clusters the view is exact: only hosts with a container instance in them. A
    managed instance with none there is in another cluster (whose container instance this
    prune must not orphan) or in none; it is counted in `outside_clusters`, never removed.
    """
    view = fleet.read({clients.settings.region: clients}, clusters, offline_for,
                      now or datetime.now(timezone.utc))
    result = plan(view.hosts, activations.describe_all(clients), offline_for, duplicates,
                  force)
    result.outside_clusters = view.outside_clusters
    return result
