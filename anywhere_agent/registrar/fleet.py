"""The fleet view: one row per host, joining SSM managed instances and ECS container instances."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from anywhere_agent.aws.clients import Clients, aws_errors
from anywhere_agent.errors import CloudError

LOG = logging.getLogger(__name__)

SSM_PAGE = 50  # DescribeInstanceInformation MaxResults maximum
ECS_PAGE = 100  # ListContainerInstances maxResults and DescribeContainerInstances maximum
HEALTH_ATTRIBUTE = "anywhere-agent.health"
FLAGS = ("ssm_only", "ecs_only", "duplicate", "offline")


@dataclass
class Host:
    """One row of the fleet; SSM fields are empty for `ecs_only`, ECS fields for `ssm_only`."""

    instance_id: str
    name: str = ""
    computer_name: str = ""
    ping_status: str = ""
    last_ping: datetime | None = None
    ping_age_s: int | None = None
    agent_version: str = ""
    ip_address: str = ""
    activation_id: str = ""
    cluster: str = ""
    container_instance_arn: str = ""
    container_instance_status: str = ""
    agent_connected: bool | None = None
    ecs_agent_version: str = ""
    running_tasks: int | None = None
    pending_tasks: int | None = None
    health: str | None = None
    ecs_health: str | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def in_ssm(self) -> bool:
        return "ecs_only" not in self.flags

    @property
    def in_ecs(self) -> bool:
        return bool(self.container_instance_arn)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "computer_name": self.computer_name,
            "instance_id": self.instance_id,
            "ping_status": self.ping_status or None,
            "last_ping": self.last_ping.isoformat() if self.last_ping else None,
            "ping_age_s": self.ping_age_s,
            "agent_version": self.agent_version or None,
            "ip_address": self.ip_address or None,
            "activation_id": self.activation_id or None,
            "cluster": self.cluster or None,
            "container_instance_arn": self.container_instance_arn or None,
            "container_instance_status": self.container_instance_status or None,
            "agent_connected": self.agent_connected,
            "ecs_agent_version": self.ecs_agent_version or None,
            "running_tasks": self.running_tasks,
            "pending_tasks": self.pending_tasks,
            "health": self.health,
            "ecs_health": self.ecs_health,
            "flags": list(self.flags),
        }


@dataclass
class Fleet:
    hosts: list[Host]
    clusters: list[str]
    offline_after: timedelta

    def summary(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for h in self.hosts:
            counts.update(h.flags)
            counts["online"] += h.ping_status == "Online"
            counts["active"] += h.container_instance_status == "ACTIVE"
            counts["connected"] += bool(h.agent_connected)
        return {"hosts": len(self.hosts),
                **{k: counts[k] for k in ("online", "active", "connected", *FLAGS)}}

    def summary_line(self) -> str:
        s = self.summary()
        return (f"{s['hosts']} hosts: {s['online']} online, {s['active']} active, "
                f"{s['connected']} connected; {s['ssm_only']} ssm_only, {s['ecs_only']} ecs_only, "
                f"{s['duplicate']} duplicate, {s['offline']} offline "
                f"(> {int(self.offline_after.total_seconds())}s)")

    def to_dict(self) -> dict[str, Any]:
        return {"clusters": self.clusters, "summary": self.summary(),
                "offline_after_s": int(self.offline_after.total_seconds()),
                "hosts": [h.to_dict() for h in self.hosts]}


def managed_instances(clients: Clients) -> list[dict[str, Any]]:
    """All SSM managed instances (`mi-`), 50 per DescribeInstanceInformation call."""
    ssm = clients.client("ssm")
    with aws_errors("listing SSM managed instances (DescribeInstanceInformation)"):
        return [i for page in ssm.get_paginator("describe_instance_information").paginate(
                    PaginationConfig={"PageSize": SSM_PAGE})
                for i in page.get("InstanceInformationList", [])
                if str(i.get("InstanceId", "")).startswith("mi-")]


def resolve_clusters(clients: Clients, names: Sequence[str]) -> list[str]:
    """Cluster ARNs to look in: the named ones (each must exist) or every cluster in the region."""
    ecs = clients.client("ecs")
    if not names:
        with aws_errors("listing ECS clusters"):
            return [arn for page in ecs.get_paginator("list_clusters").paginate(
                        PaginationConfig={"PageSize": ECS_PAGE})
                    for arn in page.get("clusterArns", [])]
    arns: list[str] = []
    for start in range(0, len(names), ECS_PAGE):
        batch = list(names[start:start + ECS_PAGE])
        with aws_errors("describing ECS clusters"):
            resp = ecs.describe_clusters(clusters=batch)
        active = {c["clusterName"]: c["clusterArn"] for c in resp.get("clusters", [])
                  if c.get("status") == "ACTIVE"}
        active.update({c["clusterArn"]: c["clusterArn"] for c in resp.get("clusters", [])
                       if c.get("status") == "ACTIVE"})
        missing = [n for n in batch if n not in active]
        if missing:
            raise CloudError(f"ECS cluster {', '.join(missing)} not found (or inactive)",
                             "check --cluster and --region, or create it with "
                             "`anywhere-agent registrar ensure --cluster NAME`")
        arns.extend(active[n] for n in batch)
    return arns


def container_instances(clients: Clients, cluster_arn: str) -> list[dict[str, Any]]:
    """Every container instance of a cluster: 100 ARNs per List call, 100 per Describe call."""
    ecs = clients.client("ecs")
    name = cluster_arn.rsplit("/", 1)[-1]
    with aws_errors(f"listing container instances of cluster {name}"):
        arns = [a for page in ecs.get_paginator("list_container_instances").paginate(
                    cluster=cluster_arn, PaginationConfig={"PageSize": ECS_PAGE})
                for a in page.get("containerInstanceArns", [])]
    found: list[dict[str, Any]] = []
    for start in range(0, len(arns), ECS_PAGE):
        with aws_errors(f"describing container instances of cluster {name}"):
            resp = ecs.describe_container_instances(
                cluster=cluster_arn, containerInstances=arns[start:start + ECS_PAGE],
                include=["CONTAINER_INSTANCE_HEALTH"])
        found.extend(resp.get("containerInstances", []))
    return found


def _age(then: datetime | None, now: datetime) -> int | None:
    if then is None:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return max(0, int((now - then).total_seconds()))


def _from_ssm(info: Mapping[str, Any], now: datetime) -> Host:
    last = info.get("LastPingDateTime")
    return Host(
        instance_id=info["InstanceId"],
        name=info.get("ComputerName") or info.get("Name") or info["InstanceId"],
        computer_name=info.get("ComputerName", "") or "",
        ping_status=info.get("PingStatus", "") or "",
        last_ping=last,
        ping_age_s=_age(last, now),
        agent_version=info.get("AgentVersion", "") or "",
        ip_address=info.get("IPAddress", "") or "",
        activation_id=info.get("ActivationId", "") or "",
    )


def _add_ecs(host: Host, ci: Mapping[str, Any], cluster_arn: str) -> None:
    host.cluster = cluster_arn.rsplit("/", 1)[-1]
    host.container_instance_arn = ci.get("containerInstanceArn", "")
    host.container_instance_status = ci.get("status", "") or ""
    host.agent_connected = bool(ci.get("agentConnected", False))
    host.ecs_agent_version = (ci.get("versionInfo") or {}).get("agentVersion", "") or ""
    host.running_tasks = int(ci.get("runningTasksCount", 0) or 0)
    host.pending_tasks = int(ci.get("pendingTasksCount", 0) or 0)
    for attr in ci.get("attributes", []) or []:
        if attr.get("name") == HEALTH_ATTRIBUTE:
            host.health = attr.get("value")
    host.ecs_health = (ci.get("healthStatus") or {}).get("overallStatus")


def join(ssm: Iterable[Mapping[str, Any]],
         ecs: Iterable[tuple[str, Mapping[str, Any]]],
         offline_after: timedelta, now: datetime) -> list[Host]:
    """Pure join on the `mi-` ID, then the flags; input order does not matter."""
    by_id: dict[str, Host] = {}
    for info in ssm:
        by_id[info["InstanceId"]] = _from_ssm(info, now)
    hosts = list(by_id.values())
    for cluster_arn, ci in ecs:
        mi = str(ci.get("ec2InstanceId", "") or "")
        if not mi.startswith("mi-"):
            continue  # an EC2 container instance: not ECS Anywhere's business
        host = by_id.get(mi)
        if host is None:
            host = Host(instance_id=mi, name=mi, flags=["ecs_only"])
            hosts.append(host)
        elif host.container_instance_arn:
            # The same identity registered twice in ECS (e.g. a stale cluster): its own row.
            host = Host(**{**host.__dict__, "flags": ["duplicate"]})
            hosts.append(host)
        _add_ecs(host, ci, cluster_arn)

    names: defaultdict[str, set[str]] = defaultdict(set)
    for h in hosts:
        if h.computer_name:
            names[h.computer_name.lower()].add(h.instance_id)
    limit = int(offline_after.total_seconds())
    for h in hosts:
        if h.in_ssm and not h.in_ecs:
            h.flags.append("ssm_only")
        if h.computer_name and len(names[h.computer_name.lower()]) > 1 \
                and "duplicate" not in h.flags:
            h.flags.append("duplicate")
        if h.in_ssm and h.ping_status != "Online" and (h.ping_age_s is None
                                                       or h.ping_age_s > limit):
            h.flags.append("offline")
    hosts.sort(key=lambda h: (h.name.lower(), h.instance_id, h.cluster))
    return hosts


def collect(clients: Clients, clusters: Sequence[str] = (),
            offline_after: timedelta = timedelta(hours=1),
            now: datetime | None = None) -> Fleet:
    """Read both sides at the pagination minimum and join them."""
    cluster_arns = resolve_clusters(clients, clusters)
    clients.client("ssm")  # built here: creating clients is not thread-safe, using them is
    # SSM and ECS are independent services with their own rate limits: read them side by side.
    with ThreadPoolExecutor(max_workers=1 + min(len(cluster_arns), 4)) as pool:
        ssm_future = pool.submit(managed_instances, clients)
        ecs_futures = [(arn, pool.submit(container_instances, clients, arn))
                       for arn in cluster_arns]
        ssm = ssm_future.result()
        ecs = [(arn, ci) for arn, fut in ecs_futures for ci in fut.result()]
    now = now or datetime.now(timezone.utc)
    LOG.debug("fleet: %s managed instances, %s container instances in %s clusters",
              len(ssm), len(ecs), len(cluster_arns))
    return Fleet(join(ssm, ecs, offline_after, now),
                 [a.rsplit("/", 1)[-1] for a in cluster_arns], offline_after)
