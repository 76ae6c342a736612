"""ECS Anywhere on moto's ECS: external container instances, ACS-backed connection, paging."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Optional

from moto.ecs.models import ContainerInstance, EC2ContainerServiceBackend, ecs_backends
from moto.ecs.responses import EC2ContainerServiceResponse, format_attributes

from anywhere_agent.lab.control_plane.wire import ACCOUNT_ID, AwsCall, AwsError, Clock, Json, page

_AGENT_UA = re.compile(r"Amazon ECS Agent - v(\S+) \(\*?(\w+)\)")
_FILTER = re.compile(r"^\s*attribute:([\w.\-]+)\s*(?:(==|!=)\s*(\S+)|(exists|not_exists))?\s*$")


def patch_moto() -> None:
    """Fix moto answers that serialize attribute dicts as empty objects (idempotent)."""
    transformers = EC2ContainerServiceResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER
    for path in (
        "UpdateContainerInstancesStateResponse.containerInstances.ContainerInstance.attributes",
        "DeregisterContainerInstanceResponse.containerInstance.attributes",
    ):
        transformers[path] = format_attributes


class ExternalContainerInstance(ContainerInstance):
    """A container instance whose host is an SSM managed instance (mi-...), not EC2.

    agentConnected is read from the open ACS sessions (as on AWS); runningTasksCount and
    the drain behaviour are computed from the lab clock, so moto's own operations (update
    state, deregister) see the same truth.
    """

    def __init__(
        self,
        backend: EC2ContainerServiceBackend,
        cluster_name: str,
        instance_id: str,
        clock: Clock,
        session_open: Callable[[str], bool],
    ) -> None:
        # moto's constructor looks the host up in EC2; an external host is not there.
        now = clock.now()
        self.ec2_instance_id = instance_id
        self.region_name = backend.region_name
        self.cluster_name = cluster_name
        self.id = str(uuid.uuid4())
        self._account_id = backend.account_id
        self._backend = backend
        self._clock = clock
        self._session_open = session_open
        self._seeded_connected = False
        self._status = "ACTIVE"
        self._tasks = 0
        self.reported_tasks: dict[str, str] = {}  # task ARN -> last status the agent submitted
        self.drain_delay = 0.0
        self._drain_started: Optional[float] = None
        self.registered_at = datetime.fromtimestamp(now, timezone.utc)
        self.pending_tasks_count = 0
        self.version_info: Json = {}
        self.attributes: dict[str, Optional[str]] = {}
        self.registered_resources: list[Json] = []
        self.remaining_resources: list[Json] = []
        self.tags: list[Json] = []

    @property
    def agent_connected(self) -> bool:
        return self._seeded_connected or self._session_open(str(self.container_instance_arn))

    @agent_connected.setter
    def agent_connected(self, value: bool) -> None:
        # Only seeded instances (no agent behind them) are set by hand; real ones need ACS.
        self._seeded_connected = value

    @property
    def status(self) -> str:
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        if value == "DRAINING" and self._status != "DRAINING":
            self._drain_started = self._clock.now()
        elif value != "DRAINING":
            self._drain_started = None
        self._status = value

    @property
    def running_tasks_count(self) -> int:
        started = self._drain_started
        if started is not None and self._clock.now() - started >= self.drain_delay:
            self._tasks = 0  # simulated tasks have been moved elsewhere by the scheduler
        # Tasks the agent reported (real containers on the host) count until it says STOPPED.
        return self._tasks + sum(1 for s in self.reported_tasks.values() if s != "STOPPED")

    @running_tasks_count.setter
    def running_tasks_count(self, value: int) -> None:
        self._tasks = max(0, value)


class EcsAnywhere:
    """Handlers for the ECS operations moto gets wrong or lacks for external instances."""

    OPERATIONS = frozenset(
        {
            "RegisterContainerInstance",
            "DiscoverPollEndpoint",
            "ListContainerInstances",
            "DescribeContainerInstances",
            "DeregisterContainerInstance",
            "PutAttributes",
            "SubmitTaskStateChange",
        }
    )

    def __init__(
        self,
        clock: Clock,
        session_open: Callable[[str], bool],
        instance_for_key: Callable[[str], Optional[str]],
    ) -> None:
        self.clock = clock
        self._session_open = session_open
        self._instance_for_key = instance_for_key
        self._lock = threading.RLock()

    def handles(self, call: AwsCall) -> bool:
        if call.operation == "RegisterContainerInstance":
            # An EC2 registration (identity document present) stays moto's business.
            return not call.params.get("instanceIdentityDocument")
        return call.operation in self.OPERATIONS

    def handle(self, call: AwsCall, base_url: str) -> Json:
        backend = ecs_backends[ACCOUNT_ID][call.region]
        with self._lock:
            if call.operation == "DiscoverPollEndpoint":
                return self._discover(backend, call.params, base_url)
            handler = getattr(self, "_op_" + call.operation)
            result: Json = handler(backend, call)
            return result

    def owner(self, region: str, cluster: str, container_instance: str) -> Optional[str]:
        """The mi- ID behind an external container instance, None if it is not registered."""
        with self._lock:
            backend = ecs_backends[ACCOUNT_ID][region]
            name = cluster.split("/")[-1]
            found = backend.container_instances.get(name, {}).get(container_instance.split("/")[-1])
            if found is None or found.status == "INACTIVE":
                return None
            return str(found.ec2_instance_id)

    def record_version(
        self, region: str, cluster: str, container_instance: str, query: dict[str, str]
    ) -> None:
        """versionInfo as ACS learns it from the agent's connect query."""
        with self._lock:
            backend = ecs_backends[ACCOUNT_ID][region]
            found = backend.container_instances.get(cluster.split("/")[-1], {}).get(
                container_instance.split("/")[-1]
            )
            if found is None:
                return
            info = {
                "agentVersion": query.get("agentVersion", ""),
                "agentHash": query.get("agentHash", ""),
            }
            if query.get("dockerVersion"):
                info["dockerVersion"] = query["dockerVersion"]
            found.version_info = {k: v for k, v in info.items() if v}

    # -- lab admin -----------------------------------------------------------------------

    def seed(
        self, region: str, cluster: str, instance_ids: list[str], connected: bool
    ) -> list[str]:
        backend = ecs_backends[ACCOUNT_ID][region]
        with self._lock:
            if cluster not in backend.clusters:
                backend.create_cluster(cluster)
            arns = []
            for instance_id in instance_ids:
                instance = self._new_instance(backend, cluster, instance_id)
                instance.attributes = {
                    "ecs.capability.external": None,
                    "ecs.os-type": "linux",
                    "ecs.os-family": "LINUX",
                    "ecs.cpu-architecture": "x86_64",
                }
                instance.registered_resources = _resources(2048, 3904)
                instance.remaining_resources = _resources(2048, 3904)
                instance.version_info = {
                    "agentVersion": "1.105.1",
                    "agentHash": "a8b3e7d3",
                    "dockerVersion": "DockerVersion: 25.0.5",
                }
                instance.agent_connected = connected
                arns.append(instance.container_instance_arn)
            return arns

    def set_tasks(
        self, region: str, cluster: str, container_instance: str, running: int, drain_delay: float
    ) -> None:
        with self._lock:
            instance = self._find(ecs_backends[ACCOUNT_ID][region], cluster, container_instance)
            if not isinstance(instance, ExternalContainerInstance):
                raise AwsError("InvalidParameterException", "not an external container instance")
            instance.running_tasks_count = running
            instance.drain_delay = drain_delay

    def summary(self) -> Json:
        clusters: Json = {}
        with self._lock:
            for region, backend in _regional_backends():
                for name, instances in backend.container_instances.items():
                    if name not in backend.clusters:
                        continue
                    values = list(instances.values())
                    clusters[f"{region}/{name}"] = {
                        "container_instances": len(values),
                        "agent_connected": sum(1 for i in values if i.agent_connected),
                        "statuses": _count(i.status for i in values),
                    }
        return clusters

    # -- operations ----------------------------------------------------------------------

    def _op_RegisterContainerInstance(
        self, backend: EC2ContainerServiceBackend, call: AwsCall
    ) -> Json:
        params = call.params
        cluster = _cluster(backend, params)
        instance_id = self._instance_for_key(call.access_key or "")
        if instance_id is None:
            raise AwsError(
                "ClientException",
                "An instance identity document is required unless "
                "the caller uses the credentials of an SSM managed instance",
            )
        instance: Optional[ContainerInstance] = None
        if params.get("containerInstanceArn"):
            instance = backend.container_instances.get(cluster, {}).get(
                str(params["containerInstanceArn"]).split("/")[-1]
            )
            if instance is None:
                raise AwsError(
                    "InvalidParameterException",
                    f"Container instance {params['containerInstanceArn']} is not registered",
                )
        if not isinstance(instance, ExternalContainerInstance):
            instance = self._new_instance(backend, cluster, instance_id)
        attributes = {str(a["name"]): a.get("value") for a in params.get("attributes") or []}
        attributes.setdefault("ecs.capability.external", None)
        instance.attributes = attributes
        total = [dict(r) for r in params.get("totalResources") or []]
        instance.registered_resources = total
        instance.remaining_resources = [dict(r) for r in total]
        instance.version_info = dict(params.get("versionInfo") or {}) or _agent_version(call)
        instance.tags = list(params.get("tags") or [])
        instance.status = "ACTIVE"
        return {"containerInstance": self._render(instance, {"TAGS"})}

    def _op_SubmitTaskStateChange(
        self, backend: EC2ContainerServiceBackend, call: AwsCall
    ) -> Json:
        """The agent's report of a task's state; the caller's managed instance places it."""
        params = call.params
        cluster = _cluster(backend, params)
        instance_id = self._instance_for_key(call.access_key or "")
        instance = next(
            (
                i
                for i in backend.container_instances.get(cluster, {}).values()
                if isinstance(i, ExternalContainerInstance) and i.ec2_instance_id == instance_id
            ),
            None,
        )
        task, status = str(params.get("task", "")), str(params.get("status", ""))
        if instance is None or not task or not status:
            raise AwsError("InvalidParameterException", "Task or container instance not found.")
        instance.reported_tasks[task] = status
        return {"acknowledgment": "ACK"}

    def _discover(self, backend: EC2ContainerServiceBackend, params: Json, base_url: str) -> Json:
        # The agent dials GET /ws on both; ACS and TCS tell themselves apart by their query.
        if params.get("containerInstance"):
            self._find(backend, _cluster(backend, params), str(params["containerInstance"]))
        return {
            "endpoint": base_url,
            "telemetryEndpoint": base_url,
            "serviceConnectEndpoint": base_url,
        }

    def _op_ListContainerInstances(
        self, backend: EC2ContainerServiceBackend, call: AwsCall
    ) -> Json:
        params = call.params
        cluster = _cluster(backend, params)
        limit = params.get("maxResults", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise AwsError("InvalidParameterException", "maxResults must be between 1 and 100")
        instances = sorted(
            backend.container_instances.get(cluster, {}).values(),
            key=lambda i: str(i.container_instance_arn),
        )
        if params.get("status"):
            instances = [i for i in instances if i.status == params["status"]]
        if params.get("filter"):
            instances = _apply_filter(instances, str(params["filter"]))
        chunk, following = page(
            instances,
            limit,
            params.get("nextToken"),
            AwsError("InvalidParameterException", "Invalid nextToken"),
        )
        result: Json = {"containerInstanceArns": [i.container_instance_arn for i in chunk]}
        if following:
            result["nextToken"] = following
        return result

    def _op_DescribeContainerInstances(
        self, backend: EC2ContainerServiceBackend, call: AwsCall
    ) -> Json:
        params = call.params
        cluster = _cluster(backend, params)
        wanted = [str(x) for x in params.get("containerInstances") or []]
        if not wanted:
            raise AwsError("ClientException", "Container Instances cannot be empty.")
        if len(wanted) > 100:
            raise AwsError(
                "InvalidParameterException", "containerInstances can have at most 100 items."
            )
        include = {str(x) for x in params.get("include") or []}
        found, failures = [], []
        for reference in wanted:
            instance = backend.container_instances.get(cluster, {}).get(reference.split("/")[-1])
            if instance is None:
                failures.append({"arn": reference, "reason": "MISSING"})
            else:
                found.append(self._render(instance, include))
        return {"containerInstances": found, "failures": failures}

    def _op_DeregisterContainerInstance(
        self, backend: EC2ContainerServiceBackend, call: AwsCall
    ) -> Json:
        params = call.params
        cluster = _cluster(backend, params)
        instance = self._find(backend, cluster, str(params.get("containerInstance", "")))
        if not params.get("force") and instance.running_tasks_count > 0:
            raise AwsError("InvalidParameterException", "Found running tasks on the instance.")
        rendered = self._render(instance, set())
        del backend.container_instances[cluster][instance.id]
        backend.clusters[cluster].registered_container_instances_count -= 1
        rendered.update(status="INACTIVE", agentConnected=False)
        return {"containerInstance": rendered}

    def _op_PutAttributes(self, backend: EC2ContainerServiceBackend, call: AwsCall) -> Json:
        # moto rejects a full ARN together with targetType; AWS accepts both forms.
        params = call.params
        cluster = _cluster(backend, params)
        attributes = params.get("attributes") or []
        if not attributes:
            raise AwsError("InvalidParameterException", "attributes can not be empty")
        for attribute in attributes:
            target = attribute.get("targetId")
            targets = (
                [self._find(backend, cluster, str(target), "TargetNotFoundException")]
                if target
                else list(backend.container_instances.get(cluster, {}).values())
            )
            for instance in targets:
                instance.attributes[str(attribute["name"])] = attribute.get("value")
        return {"attributes": attributes}

    # -- helpers -------------------------------------------------------------------------

    def _new_instance(
        self, backend: EC2ContainerServiceBackend, cluster: str, instance_id: str
    ) -> ExternalContainerInstance:
        instance = ExternalContainerInstance(
            backend, cluster, instance_id, self.clock, self._session_open
        )
        backend.container_instances.setdefault(cluster, {})[instance.id] = instance
        backend.clusters[cluster].registered_container_instances_count += 1
        return instance

    def _find(
        self,
        backend: EC2ContainerServiceBackend,
        cluster: str,
        reference: str,
        code: str = "InvalidParameterException",
    ) -> ContainerInstance:
        instance = backend.container_instances.get(cluster, {}).get(reference.split("/")[-1])
        if instance is None:
            raise AwsError(code, f"Container instance {reference} not found in cluster {cluster}")
        return instance

    def _render(self, instance: ContainerInstance, include: set[str]) -> Json:
        connected = bool(instance.agent_connected)
        rendered: Json = {
            "containerInstanceArn": instance.container_instance_arn,
            "ec2InstanceId": instance.ec2_instance_id,
            "version": 1,
            "versionInfo": instance.version_info,
            "remainingResources": instance.remaining_resources,
            "registeredResources": instance.registered_resources,
            "status": instance.status,
            "agentConnected": connected,
            "runningTasksCount": instance.running_tasks_count,
            "pendingTasksCount": instance.pending_tasks_count,
            "attributes": [
                {"name": k} if v is None else {"name": k, "value": v}
                for k, v in instance.attributes.items()
            ],
            "registeredAt": instance.registered_at.timestamp(),
            "attachments": [],
        }
        if "TAGS" in include:
            rendered["tags"] = list(getattr(instance, "tags", None) or [])
        if "CONTAINER_INSTANCE_HEALTH" in include:
            now = self.clock.now()
            state = "OK" if connected else "INSUFFICIENT_DATA"
            rendered["healthStatus"] = {
                "overallStatus": state,
                "details": [
                    {
                        "type": "CONTAINER_RUNTIME",
                        "status": state,
                        "lastUpdated": now,
                        "lastStatusChange": instance.registered_at.timestamp(),
                    }
                ],
            }
        return rendered


def _cluster(backend: EC2ContainerServiceBackend, params: Json) -> str:
    name = str(params.get("cluster") or "default").split("/")[-1]
    if name not in backend.clusters:
        raise AwsError("ClusterNotFoundException", "Cluster not found.")
    return name


def _apply_filter(instances: list[ContainerInstance], expression: str) -> list[ContainerInstance]:
    """The part of the cluster query language a lab needs: attribute tests joined by 'and'."""
    for clause in re.split(r"\s+and\s+", expression):
        match = _FILTER.match(clause)
        if match is None:
            raise AwsError(
                "InvalidParameterException", f"Unsupported filter expression in the lab: {clause!r}"
            )
        name, operator, value, existence = match.groups()
        if operator == "==":
            instances = [i for i in instances if i.attributes.get(name) == value]
        elif operator == "!=":
            instances = [i for i in instances if i.attributes.get(name) != value]
        elif existence == "not_exists":
            instances = [i for i in instances if name not in i.attributes]
        else:
            instances = [i for i in instances if name in i.attributes]
    return instances


def _agent_version(call: AwsCall) -> Json:
    match = _AGENT_UA.search(call.headers.get("user-agent", ""))
    if match is None:
        return {}
    return {"agentVersion": match.group(1), "agentHash": match.group(2)}


def _resources(cpu: int, memory: int) -> list[Json]:
    return [
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
        {
            "name": "PORTS",
            "type": "STRINGSET",
            "stringSetValue": ["22", "2375", "2376", "51678", "51679"],
        },
        {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
    ]


def _regional_backends() -> list[tuple[str, EC2ContainerServiceBackend]]:
    account = ecs_backends[ACCOUNT_ID]
    # BackendDict creates regions lazily; only look at regions somebody already used.
    return [(region, backend) for region, backend in list(account.items())]


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
