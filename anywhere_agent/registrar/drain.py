"""Drain hosts before maintenance (DRAINING, then wait for their tasks to leave) and undrain."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from anywhere_agent.aws.clients import Clients, aws_errors
from anywhere_agent.errors import UsageError, WaitTimeoutError
from anywhere_agent.registrar import fleet
from anywhere_agent.registrar.wait import poll_until

LOG = logging.getLogger(__name__)
BATCH = 10  # UpdateContainerInstancesState takes at most 10 container instances per call


@dataclass(frozen=True)
class Target:
    host: str
    cluster: str
    container_instance_arn: str
    running_tasks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "cluster": self.cluster,
                "container_instance_arn": self.container_instance_arn,
                "running_tasks": self.running_tasks}


def targets(view: fleet.Fleet, wanted: Sequence[str]) -> list[Target]:
    """Pure: each wanted host (name or mi- ID) to its container instance; unknown is an error."""
    found: list[Target] = []
    missing: list[str] = []
    for want in wanted:
        key = want if want.startswith("mi-") else want.lower()
        rows = [h for h in view.hosts if h.in_ecs and key in
                {h.instance_id, h.name.lower(), h.computer_name.lower()}]
        if not rows:
            missing.append(want)
        found += [Target(want, h.cluster, h.container_instance_arn, h.running_tasks or 0)
                  for h in rows]
    if missing:
        raise UsageError(f"not in any ECS cluster: {', '.join(missing)}",
                         "check the names with `anywhere-agent registrar fleet`")
    return found


def _set_state(clients: Clients, chosen: Sequence[Target], status: str) -> None:
    ecs = clients.client("ecs")
    by_cluster: dict[str, list[str]] = {}
    for t in chosen:
        by_cluster.setdefault(t.cluster, []).append(t.container_instance_arn)
    for cluster, arns in by_cluster.items():
        for i in range(0, len(arns), BATCH):
            with aws_errors(f"UpdateContainerInstancesState {status}"):
                ecs.update_container_instances_state(cluster=cluster,
                                                     containerInstances=arns[i:i + BATCH],
                                                     status=status)


def _running(clients: Clients, chosen: Sequence[Target]) -> list[Target]:
    ecs = clients.client("ecs")
    out: list[Target] = []
    by_cluster: dict[str, list[Target]] = {}
    for t in chosen:
        by_cluster.setdefault(t.cluster, []).append(t)
    for cluster, group in by_cluster.items():
        for i in range(0, len(group), 100):
            part = group[i:i + 100]
            with aws_errors("DescribeContainerInstances"):
                resp = ecs.describe_container_instances(
                    cluster=cluster, containerInstances=[t.container_instance_arn for t in part])
            counts = {ci["containerInstanceArn"]: int(ci.get("runningTasksCount", 0))
                      for ci in resp.get("containerInstances", [])}
            out += [Target(t.host, t.cluster, t.container_instance_arn,
                           counts.get(t.container_instance_arn, 0)) for t in part]
    return out


def drain(clients: Clients, hosts: Sequence[str], timeout: timedelta,
          clusters: Sequence[str] = (), interval: float = 5.0,
          sleep: Callable[[float], None] | None = None) -> list[Target]:
    """Set DRAINING and wait, bounded, until the hosts run no tasks; the laggards on timeout."""
    chosen = targets(fleet.collect(clients, clusters), hosts)
    _set_state(clients, chosen, "DRAINING")
    last: list[Target] = list(chosen)

    def poll() -> bool:
        nonlocal last
        last = _running(clients, chosen)
        busy = [t for t in last if t.running_tasks]
        if busy:
            LOG.info("draining: %s hosts still run tasks", len(busy))
        return not busy

    polled = poll_until(poll, timeout, interval, sleep)
    if polled.done:
        return last
    busy = [t for t in last if t.running_tasks]
    # With no answered poll, nothing is known to have left: say so rather than "0 tasks".
    detail = ("; ".join(f"{t.host}: {t.running_tasks} tasks" for t in busy) if busy else
              f"{', '.join(sorted({t.host for t in last}))}: not confirmed")
    raise WaitTimeoutError(
        f"{len(busy) or len(last)} hosts still run tasks after "
        f"{int(timeout.total_seconds())}s: " + detail + polled.why(),
        "wait longer (--timeout), stop the tasks, or undrain with `registrar undrain`")


def undrain(clients: Clients, hosts: Sequence[str],
            clusters: Sequence[str] = ()) -> list[Target]:
    """Set the hosts' container instances ACTIVE again."""
    chosen = targets(fleet.collect(clients, clusters), hosts)
    _set_state(clients, chosen, "ACTIVE")
    return chosen
