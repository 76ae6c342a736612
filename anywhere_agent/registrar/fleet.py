"""The fleet view: one row per host, joining SSM managed instances and ECS container instances."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import botocore.parsers
import botocore.session
import botocore.utils

from anywhere_agent.aws.clients import Clients, aws_errors
from anywhere_agent.errors import CloudError

LOG = logging.getLogger(__name__)

SSM_PAGE = 50  # DescribeInstanceInformation MaxResults maximum
ECS_PAGE = 100  # ListContainerInstances maxResults and DescribeContainerInstances maximum
HEALTH_ATTRIBUTE = "anywhere-agent.health"
FLAGS = ("ssm_only", "ecs_only", "duplicate", "offline")
# Page streams read at once: one per region (SSM) and one per cluster (ECS). Each stream is
# sequential by nature (a page's token names the next), so more threads than streams buy
# nothing; past this many, streams wait their turn.
MAX_STREAMS = 16
_ECS_FIELDS = ("cluster", "container_instance_arn", "container_instance_status",
               "agent_connected", "ecs_agent_version", "running_tasks", "pending_tasks",
               "health", "ecs_health")


@dataclass(slots=True)
class FleetRow:
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
    region: str = ""
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
            "region": self.region or None,
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
    hosts: list[FleetRow]
    clusters: list[str]
    offline_after: timedelta
    regions: list[str] = field(default_factory=list)
    # Managed instances left out because clusters were named: their container instance, if
    # any, is in a cluster that was not read.
    outside_clusters: int = 0

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
        line = (f"{s['hosts']} hosts: {s['online']} online, {s['active']} active, "
                f"{s['connected']} connected; {s['ssm_only']} ssm_only, "
                f"{s['ecs_only']} ecs_only, {s['duplicate']} duplicate, {s['offline']} offline "
                f"(> {int(self.offline_after.total_seconds())}s)")
        if self.outside_clusters:
            line += (f"; {self.outside_clusters} more managed instances are in other clusters "
                     "or none (not shown; --all-clusters lists them)")
        return line

    def _head(self) -> dict[str, Any]:
        return {"clusters": self.clusters, "regions": self.regions,
                "summary": self.summary(),
                "offline_after_s": int(self.offline_after.total_seconds()),
                "outside_clusters": self.outside_clusters}

    def to_dict(self) -> dict[str, Any]:
        return {**self._head(), "hosts": [h.to_dict() for h in self.hosts]}

    def json_chunks(self) -> Iterator[str]:
        """The JSON of to_dict() (indent 2, sorted keys) one host at a time: a 20,000-host
        fleet never exists as one list of dicts or one string."""
        marker = "\u0000hosts\u0000"
        head = json.dumps({**self._head(), "hosts": marker}, indent=2, sort_keys=True)
        before, after = head.split(json.dumps(marker), 1)
        yield before
        if not self.hosts:
            yield "[]"
        for i, h in enumerate(self.hosts):
            text = json.dumps(h.to_dict(), indent=2, sort_keys=True).replace("\n", "\n    ")
            yield ("[\n    " if i == 0 else ",\n    ") + text
        if self.hosts:
            yield "\n  ]"
        yield after


# Answers of the bulk reads whose shapes hold only strings, numbers, booleans, lists, maps
# and timestamps (which the rows convert themselves).
_BULK_SHAPES = frozenset({"DescribeInstanceInformationResult", "ListContainerInstancesResponse",
                          "DescribeContainerInstancesResponse"})


def _as_sent(value: Any) -> Any:
    return value


class _BulkJsonParser(botocore.parsers.JSONParser):
    """Takes the bulk reads' JSON as sent: walking the model over each of 20,000 rows only
    spent CPU (half the command's), since their shapes need no conversion. Every other
    answer, and every error, is parsed as botocore does."""

    def _handle_json_body(self, raw_body: bytes, shape: Any) -> Any:
        base: Any = super()  # botocore's stubs leave out its protected methods
        if shape is not None and shape.name in _BULK_SHAPES:
            return base._parse_body_as_json(raw_body)
        return base._handle_json_body(raw_body, shape)


class _BulkParsers(botocore.parsers.ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "json":
            return _BulkJsonParser(timestamp_parser=_as_sent)
        return super().create_parser(protocol_name)


def reading_session() -> Any:
    """A boto3 session for bulk reads. Timestamps stay as sent (epoch numbers on the JSON
    protocols) and are converted only where a row uses one: botocore's conversion (dateutil,
    local time zone) was a third of the command's CPU on a 5,000-host read. The bulk answers
    skip the model walk (`_BulkJsonParser`). One session serves every region, so credentials
    are resolved once."""
    core = botocore.session.get_session()
    parsers = _BulkParsers()
    parsers.set_parser_defaults(timestamp_parser=_as_sent)
    core.register_component("response_parser_factory", parsers)
    return boto3.session.Session(botocore_session=core)


def _timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    parsed: datetime = botocore.utils.parse_timestamp(value)
    return parsed


def _age(then: datetime | None, now: datetime) -> int | None:
    if then is None:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return max(0, int((now - then).total_seconds()))


def _text(value: Any) -> str:
    # Versions, statuses, activation IDs and cluster names repeat across thousands of rows:
    # interned, each is stored once.
    return sys.intern(str(value)) if value else ""


def _from_ssm(info: Mapping[str, Any], region: str, now: datetime) -> FleetRow:
    last = _timestamp(info.get("LastPingDateTime"))
    computer = info.get("ComputerName", "") or ""
    return FleetRow(
        instance_id=info["InstanceId"],
        name=computer or info.get("Name") or info["InstanceId"],
        computer_name=computer,
        ping_status=_text(info.get("PingStatus")),
        last_ping=last,
        ping_age_s=_age(last, now),
        agent_version=_text(info.get("AgentVersion")),
        ip_address=info.get("IPAddress", "") or "",
        activation_id=_text(info.get("ActivationId")),
        region=region,
    )


def _from_ecs(ci: Mapping[str, Any], region: str, cluster: str) -> FleetRow:
    """The ECS half of a row (instance_id is the `mi-` ID the container instance carries)."""
    health = None
    for attr in ci.get("attributes", []) or []:
        if attr.get("name") == HEALTH_ATTRIBUTE:
            health = attr.get("value")
    mi = str(ci.get("ec2InstanceId", "") or "")
    return FleetRow(
        instance_id=mi, name=mi, region=region, cluster=cluster,
        container_instance_arn=ci.get("containerInstanceArn", ""),
        container_instance_status=_text(ci.get("status")),
        agent_connected=bool(ci.get("agentConnected", False)),
        ecs_agent_version=_text((ci.get("versionInfo") or {}).get("agentVersion")),
        running_tasks=int(ci.get("runningTasksCount", 0) or 0),
        pending_tasks=int(ci.get("pendingTasksCount", 0) or 0),
        health=_text(health) or None,
        ecs_health=_text((ci.get("healthStatus") or {}).get("overallStatus")) or None,
    )


def _merge(ssm: Iterable[FleetRow], ecs: Iterable[FleetRow], offline_after: timedelta,
           keep_unclustered: bool) -> tuple[list[FleetRow], int]:
    """Join the halves on (region, `mi-` ID), flag the rows; (rows, SSM-only rows left out)."""
    hosts = list(ssm)
    by_id = {(h.region, h.instance_id): h for h in hosts}
    for part in ecs:
        if not part.instance_id.startswith("mi-"):
            continue  # an EC2 container instance: not ECS Anywhere's business
        host = by_id.get((part.region, part.instance_id))
        if host is None:
            part.flags.append("ecs_only")
            hosts.append(part)
            continue
        if host.container_instance_arn:
            # The same identity registered twice in ECS (e.g. a stale cluster): its own row.
            host = dataclasses.replace(host, flags=["duplicate"])
            hosts.append(host)
        for name in _ECS_FIELDS:
            setattr(host, name, getattr(part, name))

    names: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)
    for h in hosts:
        if h.computer_name:
            names[h.computer_name.lower()].add((h.region, h.instance_id))
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
    left_out = 0
    if not keep_unclustered:
        kept = [h for h in hosts if "ssm_only" not in h.flags]
        left_out, hosts = len(hosts) - len(kept), kept
    hosts.sort(key=lambda h: (h.name.lower(), h.instance_id, h.region, h.cluster))
    return hosts, left_out


def join(ssm: Iterable[Mapping[str, Any]],
         ecs: Iterable[tuple[str, Mapping[str, Any]]],
         offline_after: timedelta, now: datetime, region: str = "") -> list[FleetRow]:
    """Pure join on the `mi-` ID, then the flags; input order does not matter."""
    hosts, _ = _merge((_from_ssm(i, region, now) for i in ssm),
                      (_from_ecs(ci, region, arn.rsplit("/", 1)[-1]) for arn, ci in ecs),
                      offline_after, keep_unclustered=True)
    return hosts


# -- reading: every region and cluster side by side, each at its pagination minimum ----------


def _managed_instances(clients: Clients, region: str, now: datetime,
                       stop: threading.Event) -> list[FleetRow]:
    """Every SSM managed instance (`mi-`) of a region, 50 per DescribeInstanceInformation."""
    ssm = clients.client("ssm")
    found: list[FleetRow] = []
    with aws_errors(f"listing SSM managed instances in {region} (DescribeInstanceInformation)"):
        for page in ssm.get_paginator("describe_instance_information").paginate(
                PaginationConfig={"PageSize": SSM_PAGE}):
            found += [_from_ssm(i, region, now) for i in page.get("InstanceInformationList", [])
                      if str(i.get("InstanceId", "")).startswith("mi-")]
            if stop.is_set():
                break
    return found


def _container_instances(clients: Clients, region: str, cluster_arn: str,
                         stop: threading.Event) -> list[FleetRow]:
    """A cluster's container instances: each page of 100 ARNs described (100 per call) as it
    arrives, so no more than one page of raw answers is held."""
    ecs = clients.client("ecs")
    name = _text(cluster_arn.rsplit("/", 1)[-1])
    found: list[FleetRow] = []
    with aws_errors(f"reading container instances of cluster {name} in {region}"):
        for page in ecs.get_paginator("list_container_instances").paginate(
                cluster=cluster_arn, PaginationConfig={"PageSize": ECS_PAGE}):
            arns = page.get("containerInstanceArns", [])
            if arns:
                resp = ecs.describe_container_instances(
                    cluster=cluster_arn, containerInstances=arns,
                    include=["CONTAINER_INSTANCE_HEALTH"])
                found += [_from_ecs(ci, region, name) for ci in resp.get("containerInstances", [])]
            if stop.is_set():
                break
    return found


def _find_clusters(clients: Clients, region: str,
                   names: Sequence[str]) -> tuple[list[str], set[str]]:
    """(cluster ARNs, names not found): the named ones, or every cluster of the region."""
    ecs = clients.client("ecs")
    if not names:
        with aws_errors(f"listing ECS clusters in {region}"):
            return [arn for page in ecs.get_paginator("list_clusters").paginate(
                        PaginationConfig={"PageSize": ECS_PAGE})
                    for arn in page.get("clusterArns", [])], set()
    arns: list[str] = []
    missing: set[str] = set()
    for start in range(0, len(names), ECS_PAGE):
        batch = list(names[start:start + ECS_PAGE])
        with aws_errors(f"describing ECS clusters in {region}"):
            resp = ecs.describe_clusters(clusters=batch)
        active: dict[str, str] = {}
        for c in resp.get("clusters", []):
            if c.get("status") == "ACTIVE":
                active[c["clusterName"]] = active[c["clusterArn"]] = c["clusterArn"]
        missing |= {n for n in batch if n not in active}
        arns += [active[n] for n in batch if n in active]
    return list(dict.fromkeys(arns)), missing


def read(regions: Mapping[str, Clients], clusters: Sequence[str] = (),
         offline_after: timedelta = timedelta(hours=1), now: datetime | None = None,
         keep_unclustered: bool = False) -> Fleet:
    """Read every region's SSM side and every cluster's ECS side concurrently, and join them.

    With named clusters the view is exact: a managed instance with no container instance in
    them is in another cluster or none, and is left out (counted in `outside_clusters`) unless
    keep_unclustered. A named cluster must exist in at least one of the regions.
    """
    now = now or datetime.now(timezone.utc)
    for c in regions.values():  # built here: creating clients is not thread-safe, using them is
        c.client("ssm")
        c.client("ecs")
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=MAX_STREAMS, thread_name_prefix="fleet")
    try:
        # The SSM streams are the longest (50 per page): they start first.
        ssm_futures = [pool.submit(_managed_instances, c, r, now, stop)
                       for r, c in regions.items()]
        found = list(pool.map(lambda r: _find_clusters(regions[r], r, clusters), regions))
        nowhere = set.intersection(*(missing for _, missing in found)) if found else set()
        if nowhere:
            where = ", ".join(regions)
            raise CloudError(
                f"ECS cluster {', '.join(n for n in clusters if n in nowhere)} not found "
                f"(or inactive) in {where}",
                "check --cluster and --region, or create it with "
                "`anywhere-agent registrar ensure --cluster NAME`")
        ecs_futures = [pool.submit(_container_instances, regions[r], r, arn, stop)
                       for r, (arns, _) in zip(regions, found) for arn in arns]
        _wait_all([*ssm_futures, *ecs_futures])
        hosts, left_out = _merge(
            (h for f in ssm_futures for h in f.result()),
            (h for f in ecs_futures for h in f.result()),
            offline_after, keep_unclustered or not clusters)
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    names = list(dict.fromkeys(arn.rsplit("/", 1)[-1] for arns, _ in found for arn in arns))
    LOG.debug("fleet: %s rows from %s regions and %s clusters", len(hosts), len(regions),
              len(names))
    return Fleet(hosts, names, offline_after, list(regions), left_out)


def _wait_all(futures: Sequence[Future[Any]]) -> None:
    """Wait for every stream; the first failure is raised at once (the others then stop)."""
    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    for f in futures:
        if f in done and f.exception() is not None:
            f.result()
    wait(futures)


def collect(clients: Clients, clusters: Sequence[str] = (),
            offline_after: timedelta = timedelta(hours=1),
            now: datetime | None = None) -> Fleet:
    """One region, SSM-only hosts kept even when clusters are named: wait, drain and prune
    look hosts up by name and must tell "not in SSM" from "not in the cluster"."""
    return read({clients.settings.region: clients}, clusters, offline_after, now,
                keep_unclustered=True)
