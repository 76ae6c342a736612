"""Publishing health: state file, textfile, /metrics on loopback, optional AWS reporting."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from anywhere_agent.config import HealthConfig, ReportingConfig
from anywhere_agent.errors import ConfigError
from anywhere_agent.health.model import Check, HostHealth, Status
from anywhere_agent.registrar import policies
from anywhere_agent.supervise.metrics_http import MetricsServer, parse_listen
from anywhere_agent.supervise.reporting import AwsReporter, NullReporter, make_reporter

if TYPE_CHECKING:
    from conftest import Node


def test_state_and_textfile_are_written_atomically_and_world_readable(node: Node) -> None:
    cfg = dataclasses.replace(node.config, health=HealthConfig(
        state_file="/var/lib/anywhere-agent/health.json",
        textfile_path="/var/lib/node_exporter/anywhere_agent.prom"))
    node.config = cfg
    sup = node.supervisor()
    sup.step()
    state = node.host.path(cfg.health.state_file)
    prom = node.host.path(cfg.health.textfile_path)
    assert json.loads(state.read_text())["status"] == "OK"
    assert prom.read_text().startswith("# HELP anywhere_agent_health_status")
    assert state.stat().st_mode & 0o777 == 0o644 and prom.stat().st_mode & 0o777 == 0o644
    leftovers = [p.name for p in state.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_metrics_endpoint_serves_the_exposition_on_loopback(node: Node) -> None:
    sup = node.supervisor()
    sup.step()
    server = MetricsServer("127.0.0.1:0", sup.prometheus_text)
    host, port = server.start()
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
            ctype = resp.headers["Content-Type"]
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://{host}:{port}/other", timeout=5)
    finally:
        server.stop()
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    assert "anywhere_agent_health_status 0" in body.splitlines()


@pytest.mark.parametrize("listen", ["0.0.0.0:9799", "10.0.0.5:9799", "example.com:9799",
                                    "127.0.0.1", "127.0.0.1:99999"])
def test_metrics_listen_other_than_loopback_host_port_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError):
        parse_listen(listen)


def test_metrics_listen_accepts_ipv4_and_ipv6_loopback() -> None:
    assert parse_listen("127.0.0.1:9799") == ("127.0.0.1", 9799)
    assert parse_listen("[::1]:9799") == ("::1", 9799)


def test_the_default_supervisor_never_imports_boto3_botocore_typer_or_tenacity(
        node: Node) -> None:
    # Run a real round of the default probes in a fresh interpreter.
    code = f"""
import sys
from pathlib import Path
from anywhere_agent.config import Config, HealthConfig
from anywhere_agent.host.gateway import Host
from anywhere_agent.supervise.daemon import Supervisor
cfg = Config(cluster="lab", docker_source="none",
             health=HealthConfig(state_file="/health.json"))
Supervisor(cfg, Host({str(node.root)!r}, runner=lambda argv, **kw: __import__(
    "anywhere_agent.host.gateway", fromlist=["Result"]).Result(tuple(argv), 1))).step()
print(sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "typer",
                                                         "tenacity")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
    assert json.loads((node.root / "health.json").read_text())["cluster"] == "lab"


def test_reporting_is_off_by_default(node: Node) -> None:
    assert isinstance(make_reporter(node.config, node.host), NullReporter)


class FakeAws:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, service: str) -> Any:
        fake = self

        class Client:
            def put_metric_data(self, **kw: Any) -> None:
                fake.calls.append((service, "put_metric_data", kw))

            def put_attributes(self, **kw: Any) -> None:
                fake.calls.append((service, "put_attributes", kw))

        return Client()


def test_aws_reporter_sends_one_metric_batch_per_period_and_the_attribute_on_change(
        node: Node) -> None:
    cfg = dataclasses.replace(node.config, reporting=ReportingConfig(
        cloudwatch=True, attribute=True, attribute_name="anywhere-agent.health"))
    aws = FakeAws()
    reporter = AwsReporter(cfg, node.host, 15.0, client_factory=aws)
    arn = "arn:aws:ecs:us-east-1:1:container-instance/lab/abc"

    def health(status: Status) -> HostHealth:
        return HostHealth.build([Check("x", status, "s")], 0.0, cluster="lab",
                                instance_id="mi-0123456789abcdef0",
                                container_instance_arn=arn)

    for second in range(0, 120, 15):
        reporter.report(health(Status.OK), float(second))
    reporter.report(health(Status.CRITICAL), 120.0)
    metrics = [c for c in aws.calls if c[1] == "put_metric_data"]
    attrs = [c for c in aws.calls if c[1] == "put_attributes"]
    assert len(metrics) == 3  # t=0, 60, 120: CloudWatch's one-minute resolution
    batch = metrics[0][2]
    assert batch["Namespace"] == "ECSAnywhere/Agent"
    dims = batch["MetricData"][0]["Dimensions"]
    assert dims == [{"Name": "ClusterName", "Value": "lab"},
                    {"Name": "InstanceId", "Value": "mi-0123456789abcdef0"}]
    assert [a[2]["attributes"][0]["value"] for a in attrs] == ["OK", "CRITICAL"]
    assert attrs[0][2]["attributes"][0]["targetId"] == arn


def test_aws_reporter_failures_never_stop_supervision(node: Node,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # CloudWatch unreachable for the first two minutes, then back.
    cfg = dataclasses.replace(node.config, reporting=ReportingConfig(cloudwatch=True))
    aws = FakeAws()
    down = {"until": node.clock.time() + 120}

    def flaky(service: str) -> Any:
        if node.clock.time() < down["until"]:
            raise OSError("no route to host")
        return aws(service)

    node.config = cfg
    sup = node.supervisor(reporter=AwsReporter(cfg, node.host, 15.0, client_factory=flaky))
    seen = []
    for _ in range(12):  # three minutes of 15 s rounds
        seen.append(sup.step().generated_at)
        node.clock.advance(15)
    # Every round still probed and published its state, the failures only logged.
    assert len(set(seen)) == 12 and node.state()["generated_at"] == seen[-1]
    assert node.state()["status"] == "OK"
    failures = [r for r in caplog.records if "PutMetricData failed" in r.getMessage()]
    assert len(failures) == 2 and "no route to host" in failures[0].getMessage()
    # Reporting resumed once the endpoint answered again: one batch per minute.
    assert [c[1] for c in aws.calls] == ["put_metric_data"]


def test_the_reporting_statements_of_the_host_policy_are_narrow() -> None:
    # iam/host-role-extra.json is the one copy (registrar ensure attaches it to the role).
    statements = policies.load("host-role-extra")["Statement"]
    by_action = {s["Action"]: s for s in statements if isinstance(s["Action"], str)}
    metric = by_action["cloudwatch:PutMetricData"]
    # PutMetricData has no resource-level permissions; the namespace condition narrows it.
    assert metric["Condition"] == {"StringEquals": {"cloudwatch:namespace": "ECSAnywhere/Agent"}}
    assert by_action["ecs:PutAttributes"]["Resource"] == "arn:aws:ecs:*:*:container-instance/*/*"
    assert not any(k in s for s in statements for k in ("NotAction", "NotResource"))


def test_no_second_copy_of_the_reporting_policy_ships_with_the_supervisor() -> None:
    from importlib import resources

    shipped = [p.name for p in resources.files("anywhere_agent.supervise").iterdir()
               if p.name.endswith(".json")]
    assert shipped == []


def test_shipped_policy_allows_exactly_the_calls_the_reporter_makes_in_its_namespace(
        node: Node) -> None:
    shipped = policies.load("host-role-extra")
    # The calls a reporter with both outputs on really makes, as IAM action names.
    cfg = dataclasses.replace(node.config, reporting=ReportingConfig(cloudwatch=True,
                                                                     attribute=True))
    aws = FakeAws()
    AwsReporter(cfg, node.host, 15.0, client_factory=aws).report(HostHealth.build(
        [Check("x", Status.OK, "s")], 0.0, cluster="lab", instance_id="mi-0123456789abcdef0",
        container_instance_arn="arn:aws:ecs:us-east-1:1:container-instance/lab/abc"), 0.0)
    used = sorted({f"{svc}:{''.join(w.title() for w in op.split('_'))}"
                   for svc, op, _ in aws.calls})
    assert used == ["cloudwatch:PutMetricData", "ecs:PutAttributes"]
    assert shipped["Version"] == "2012-10-17"
    assert set(used) <= set(policies.actions(shipped))
    (metric,) = [s for s in shipped["Statement"] if s["Action"] == "cloudwatch:PutMetricData"]
    sent_namespace = next(kw["Namespace"] for _, op, kw in aws.calls if op == "put_metric_data")
    assert metric["Condition"]["StringEquals"]["cloudwatch:namespace"] == sent_namespace
    assert sent_namespace == ReportingConfig().cloudwatch_namespace
