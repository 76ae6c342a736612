"""Deregister named hosts centrally (decommission): their container instances, then their
managed instances; whatever is already gone counts as done."""

from __future__ import annotations

from collections.abc import Sequence

from anywhere_agent.aws.clients import Clients
from anywhere_agent.errors import RefusedError, UsageError
from anywhere_agent.registrar import fleet, prune


def make_plan(clients: Clients, instance_ids: Sequence[str], clusters: Sequence[str] = (),
              force: bool = False) -> prune.Plan:
    """Read where the hosts are registered; touches nothing. Refuses a host that still runs
    tasks unless `force` (drain it first)."""
    wanted = list(dict.fromkeys(instance_ids))
    bad = [i for i in wanted if not i.startswith("mi-")]
    if not wanted or bad:
        raise UsageError(f"not a managed instance ID: {', '.join(bad) or '(none given)'}",
                         "pass the hosts' mi- IDs (`anywhere-agent registrar fleet` lists them)")
    plan = prune.Plan()
    busy: list[str] = []
    for host in fleet.collect(clients, clusters).hosts:
        if host.instance_id not in wanted or not host.in_ecs:
            continue
        if host.running_tasks and not force:
            busy.append(f"{host.instance_id} ({host.running_tasks} running tasks)")
        plan.actions.append(prune.Action(
            "deregister_container_instance", host.container_instance_arn, host.instance_id,
            "decommission", cluster=host.cluster, force=True))
    if busy:
        raise RefusedError(f"tasks still run on {', '.join(busy)}",
                           "drain first (`anywhere-agent registrar drain`), or pass --force")
    plan.actions += [prune.Action("deregister_managed_instance", i, i, "decommission")
                     for i in wanted]
    return plan


def deregister(clients: Clients, instance_ids: Sequence[str], clusters: Sequence[str] = (),
               force: bool = False) -> prune.PruneResult:
    """Remove the hosts; a partial failure names the same command to finish the job."""
    wanted = " ".join(dict.fromkeys(instance_ids))
    return prune.apply(clients, make_plan(clients, instance_ids, clusters, force), False,
                       command="deregister",
                       again=f"fix the cause and run `anywhere-agent registrar deregister "
                             f"{wanted}` again (what is already gone counts as done)")
