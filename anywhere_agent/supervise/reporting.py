"""Optional AWS reporting (off by default): CloudWatch metrics and an ECS instance attribute.

boto3 is imported only when a reporter is enabled, so the default supervisor stays small.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Optional, Protocol

from anywhere_agent.config import Config
from anywhere_agent.health.model import Check, HostHealth, Status
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host

LOG = logging.getLogger(__name__)
DEFAULT_NAMESPACE = "ECSAnywhere/Agent"
# CloudWatch's standard resolution is one minute: more frequent batches only cost money.
MIN_METRIC_PERIOD = 60.0


class Reporter(Protocol):
    def report(self, health: HostHealth, now: float) -> None: ...

    def checks(self) -> list[Check]:
        """What reporting itself last saw (a denial is named in the host's health)."""
        ...


class NullReporter:
    def report(self, health: HostHealth, now: float) -> None:
        return None

    def checks(self) -> list[Check]:
        return []


CHECK_NAME = "reporting"
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
_DENIED_FIX = ("attach iam/host-role-extra.json to the hosts' IAM role "
               "(`anywhere-agent registrar ensure --role ROLE`), or turn reporting off")


def metric_data(health: HostHealth, cluster: str, instance_id: str) -> list[dict[str, Any]]:
    dims = [{"Name": "ClusterName", "Value": cluster},
            {"Name": "InstanceId", "Value": instance_id}]
    counted = [c for c in health.checks if not c.skipped]
    return [
        {"MetricName": "HealthStatus", "Dimensions": dims, "Value": float(health.status),
         "Unit": "None"},
        {"MetricName": "CriticalChecks", "Dimensions": dims, "Unit": "Count",
         "Value": float(sum(c.status is Status.CRITICAL for c in counted))},
        {"MetricName": "WarningChecks", "Dimensions": dims, "Unit": "Count",
         "Value": float(sum(c.status is Status.WARNING for c in counted))},
    ]


class AwsReporter:
    """One PutMetricData batch per period; PutAttributes when the overall status changes."""

    def __init__(self, config: Config, host: Host, interval: float,
                 client_factory: Optional[Callable[[str], Any]] = None) -> None:
        self._cfg = config
        self._host = host
        self.period = max(MIN_METRIC_PERIOD, interval)
        self._factory = client_factory
        self._next_metrics = float("-inf")
        self._attribute_sent: Optional[tuple[str, str]] = None
        self._clients: dict[str, Any] = {}
        self._failures: dict[str, str] = {}  # call -> why it last failed; absent once it worked
        self._sent: set[str] = set()

    def checks(self) -> list[Check]:
        if not self._failures:
            if not self._sent:
                return []  # nothing tried yet
            return [Check(CHECK_NAME, Status.OK, f"sent {', '.join(sorted(self._sent))}")]
        denied = {call: why for call, why in self._failures.items() if why.startswith("denied")}
        summary = "; ".join(f"{call} {why}" for call, why in self._failures.items())
        if denied:
            return [Check(CHECK_NAME, Status.WARNING, summary, fix=_DENIED_FIX,
                          reason="access_denied")]
        return [Check(CHECK_NAME, Status.WARNING, summary,
                      fix="check the endpoint/proxy for cloudwatch and ecs", reason="failed")]

    def _outcome(self, call: str, err: Optional[Exception]) -> None:
        if err is None:
            self._failures.pop(call, None)
            self._sent.add(call)
            return
        from anywhere_agent.aws.clients import error_code

        code = error_code(err)
        if code in _DENIED:
            message = getattr(err, "response", {}).get("Error", {}).get("Message", "")
            self._failures[call] = f"denied ({code}): {message}".rstrip(": ")
        else:
            self._failures[call] = f"failed ({code or type(err).__name__})"

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            if self._factory is not None:
                self._clients[service] = self._factory(service)
            else:
                from anywhere_agent.aws.clients import AwsSettings, Clients

                proxy = self._cfg.proxy
                settings = AwsSettings(
                    region=self._cfg.region, endpoints=dict(self._cfg.endpoints),
                    proxies={k: v for k, v in (("http", proxy.http), ("https", proxy.https))
                             if v},
                    max_attempts=3, connect_timeout=3.0, read_timeout=10.0,
                    credentials_file=str(self._host.path(agent_files.HOST_CREDENTIALS)))
                self._clients[service] = Clients(settings).client(service)
        return self._clients[service]

    def report(self, health: HostHealth, now: float) -> None:
        rep = self._cfg.reporting
        # Never let reporting break supervision: AWS being unreachable is not a node fault.
        if rep.cloudwatch and health.instance_id and now >= self._next_metrics:
            self._next_metrics = now + self.period
            try:
                self._client("cloudwatch").put_metric_data(
                    Namespace=rep.cloudwatch_namespace,
                    MetricData=metric_data(health, self._cfg.cluster, health.instance_id))
            except Exception as err:  # noqa: BLE001 - any AWS/network failure is only logged
                LOG.warning("CloudWatch PutMetricData failed: %s", err)
                self._outcome("cloudwatch:PutMetricData", err)
            else:
                self._outcome("cloudwatch:PutMetricData", None)
        arn = health.container_instance_arn
        if rep.attribute and arn and self._attribute_sent != (arn, health.status.name):
            try:
                # Full ARN and no targetType: valid for ECS, and avoids a moto bug.
                self._client("ecs").put_attributes(
                    cluster=self._cfg.cluster,
                    attributes=[{"name": rep.attribute_name, "value": health.status.name,
                                 "targetId": arn}])
                self._attribute_sent = (arn, health.status.name)
                self._outcome("ecs:PutAttributes", None)
            except Exception as err:  # noqa: BLE001 - retried on the next round
                LOG.warning("ECS PutAttributes failed: %s", err)
                self._outcome("ecs:PutAttributes", err)


def make_reporter(config: Config, host: Host) -> Reporter:
    rep = config.reporting
    if not (rep.cloudwatch or rep.attribute):
        return NullReporter()
    return AwsReporter(config, host, config.supervise.interval_seconds)
