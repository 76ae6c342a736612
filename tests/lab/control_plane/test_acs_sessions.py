"""ACS and TCS sessions: agentConnected is the ACS session, heartbeats are acked, acks matter."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Callable

import pytest

from anywhere_agent.lab.control_plane.admin import LabAdmin
from anywhere_agent.lab.control_plane.server import ControlPlane
from anywhere_agent.lab.doubles import ecs_agent

if TYPE_CHECKING:
    from conftest import Agent, Host


@pytest.fixture
def cluster(ecs: Any) -> str:
    ecs.create_cluster(clusterName="edge")
    return "edge"


@pytest.fixture
def arn(host: Host, cluster: str, agent: Agent) -> str:
    return str(agent.register_container_instance(host.ecs(), cluster)["containerInstanceArn"])


def connected(ecs: Any, cluster: str, arn: str) -> bool:
    answer = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])
    return bool(answer["containerInstances"][0]["agentConnected"])


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def read(session: Any, timeout: float = 5.0) -> dict[str, Any]:
    text = session.receive(timeout)
    assert text is not None, "no message from the control plane"
    return dict(json.loads(text))


def test_agent_connected_is_true_exactly_while_the_acs_session_is_open(
        plane: ControlPlane, host: Host, cluster: str, arn: str, ecs: Any) -> None:
    assert not connected(ecs, cluster, arn)
    session = host.acs(arn, cluster)
    # The server thread records the session just after its 101 reaches the agent: eventually.
    assert eventually(lambda: connected(ecs, cluster, arn))
    session.close(1000, "agent stopping")
    assert eventually(lambda: not connected(ecs, cluster, arn))


def test_a_dropped_tcp_connection_reads_disconnected(
        plane: ControlPlane, host: Host, cluster: str, arn: str, ecs: Any) -> None:
    session = host.acs(arn, cluster)
    assert eventually(lambda: connected(ecs, cluster, arn))
    session.shutdown()  # a killed agent: no close frame, just the socket gone
    assert eventually(lambda: not connected(ecs, cluster, arn))


def test_acs_sends_heartbeats_in_the_model_shape_and_keeps_a_session_that_acks_them(
        plane: ControlPlane, host: Host, cluster: str, arn: str, ecs: Any) -> None:
    plane.sessions.heartbeat_seconds = 0.3
    session = host.acs(arn, cluster)
    try:
        for _ in range(4):
            beat = read(session)
            assert beat["type"] == "HeartbeatMessage"
            assert beat["message"]["healthy"] is True and beat["message"]["messageId"]
            session.send_text(ecs_agent.ws_message(
                "HeartbeatAckRequest", {"messageId": beat["message"]["messageId"]}))
        assert eventually(lambda: connected(ecs, cluster, arn))
        assert plane.sessions.summary()["acks"] >= 4
    finally:
        session.close(1000, "")


def test_acs_closes_a_session_whose_heartbeat_acks_stop(
        plane: ControlPlane, host: Host, cluster: str, arn: str, ecs: Any) -> None:
    plane.sessions.heartbeat_seconds = 0.2
    session = host.acs(arn, cluster)
    with pytest.raises(ecs_agent.WsClosed, match="1008"):
        for _ in range(10):
            session.receive(2.0)  # never acks
    assert eventually(lambda: not connected(ecs, cluster, arn))


def test_tcs_acks_published_metrics_and_does_not_count_as_connected(
        plane: ControlPlane, host: Host, cluster: str, arn: str, ecs: Any) -> None:
    plane.sessions.heartbeat_seconds = 30
    cfg = ecs_agent.Config(env={"AWS_DEFAULT_REGION": "us-east-1", "ECS_CLUSTER": cluster})
    session = host.acs(arn, cluster, kind="tcs")
    try:
        assert read(session)["type"] == "HeartbeatMessage"
        session.send_text(ecs_agent.ws_message(
            "PublishMetricsRequest", ecs_agent.metrics_request(cfg, arn)))
        assert read(session)["type"] == "AckPublishMetric"
        assert not connected(ecs, cluster, arn)
        assert plane.sessions.summary()["tcs_open"] == 1
    finally:
        session.close(1000, "")


def test_version_info_comes_from_the_acs_connect_query(
        plane: ControlPlane, host: Host, cluster: str, arn: str, ecs: Any) -> None:
    session = host.acs(arn, cluster)
    try:
        [instance] = ecs.describe_container_instances(
            cluster=cluster, containerInstances=[arn])["containerInstances"]
        assert instance["versionInfo"] == {"agentVersion": ecs_agent.AGENT_VERSION,
                                           "agentHash": ecs_agent.AGENT_HASH}
    finally:
        session.close(1000, "")


def test_an_upgrade_signed_with_another_hosts_keys_is_refused(
        plane: ControlPlane, host: Host, cluster: str, arn: str, agent: Agent, ssm: Any,
        role: str) -> None:
    host_type = type(host)
    activation_id, code = agent.create_activation(ssm, role)
    other_id = agent.register(activation_id, code).body["InstanceId"]
    other = host_type(agent, other_id, agent.role_token(other_id).body)
    with pytest.raises(ecs_agent.AwsError) as refused:
        other.acs(arn, cluster)
    assert refused.value.code == "AccessDeniedException"
    with pytest.raises(ecs_agent.AwsError) as anonymous:
        host_type(agent, "mi-0", {"AccessKeyId": "AKIAUNKNOWNKEY", "SecretAccessKey": "s",
                                  "SessionToken": ""}).acs(arn, cluster)
    assert anonymous.value.code == "UnrecognizedClientException"
    forged = dict(host.credentials, SecretAccessKey="not-the-vended-secret")
    with pytest.raises(ecs_agent.AwsError) as tampered:
        host_type(agent, host.instance_id, forged).acs(arn, cluster)
    assert tampered.value.code == "InvalidSignatureException"


def test_acs_and_tcs_need_ecs_poll_and_start_telemetry_session_in_the_hosts_role(
        plane: ControlPlane, host: Host, cluster: str, arn: str, agent: Agent,
        role: str) -> None:
    """IAM authorises the upgrade as it does every call: without the ECS managed policy the
    role lacks ecs:Poll and ecs:StartTelemetrySession, and the agent cannot connect."""
    iam = agent.client("iam")
    ecs_policy = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
    iam.detach_role_policy(RoleName=role, PolicyArn=ecs_policy)
    with pytest.raises(ecs_agent.AwsError) as acs:
        host.acs(arn, cluster)
    assert acs.value.code == "AccessDeniedException"
    assert "ecs:Poll" in str(acs.value)
    with pytest.raises(ecs_agent.AwsError) as tcs:
        host.acs(arn, cluster, kind="tcs")
    assert tcs.value.code == "AccessDeniedException"
    assert "ecs:StartTelemetrySession" in str(tcs.value)
    iam.attach_role_policy(RoleName=role, PolicyArn=ecs_policy)
    host.acs(arn, cluster).close(1000, "")


def test_an_upgrade_signed_ten_minutes_off_is_refused_as_expired(
        plane: ControlPlane, host: Host, cluster: str, arn: str) -> None:
    import datetime as dt
    import http.client
    import urllib.parse

    cfg = ecs_agent.Config(env={"AWS_DEFAULT_REGION": "us-east-1", "ECS_CLUSTER": cluster})
    query = urllib.parse.urlencode(sorted(ecs_agent.session_query("acs", cfg, arn)),
                                   quote_via=lambda v, *_: urllib.parse.quote(v, safe="-_.~"))
    url = f"{plane.url}/ws?{query}"
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)
    headers = {"Host": urllib.parse.urlsplit(url).netloc,
               "X-Amz-Date": when.strftime("%Y%m%dT%H%M%SZ"),
               "X-Amz-Security-Token": host.credentials["SessionToken"]}
    creds = {"key": host.credentials["AccessKeyId"],
             "secret": host.credentials["SecretAccessKey"]}
    headers["Authorization"] = ecs_agent.sign("GET", url, headers, b"", "us-east-1", "ecs",
                                              creds, when)
    headers.update({"Upgrade": "websocket", "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13"})
    parts = urllib.parse.urlsplit(plane.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("GET", f"/ws?{query}", headers=headers)
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 403
    assert body["type"] == "InvalidSignatureException"
    assert body["message"]["message"].startswith("Signature expired")


def test_a_deregistered_instance_gets_inactive_instance_exception(
        plane: ControlPlane, host: Host, cluster: str, arn: str, ecs: Any) -> None:
    ecs.deregister_container_instance(cluster=cluster, containerInstance=arn, force=True)
    with pytest.raises(ecs_agent.AwsError) as refused:
        host.acs(arn, cluster)
    assert refused.value.code == "InactiveInstanceException"


def test_the_admin_switch_refuses_acs_to_one_host_until_turned_back(
        plane: ControlPlane, host: Host, cluster: str, arn: str, ecs: Any,
        admin: LabAdmin) -> None:
    session = host.acs(arn, cluster)
    admin.refuse_acs(host.instance_id)
    with pytest.raises(ecs_agent.WsClosed):
        for _ in range(10):
            session.receive(2.0)
    assert eventually(lambda: not connected(ecs, cluster, arn))
    with pytest.raises(ecs_agent.AwsError):
        host.acs(arn, cluster)
    admin.refuse_acs(host.instance_id, refuse=False)
    again = host.acs(arn, cluster)
    try:
        assert eventually(lambda: connected(ecs, cluster, arn))
        assert admin.state()["sessions"]["acs_open"] == 1
    finally:
        again.close(1000, "")


def test_heartbeat_cadence_and_the_missed_ack_close_run_on_the_lab_clock() -> None:
    import socket
    import threading

    from anywhere_agent.lab.control_plane.acs import Sessions, SessionTarget
    from anywhere_agent.lab.control_plane.websocket import WebSocket
    from anywhere_agent.lab.control_plane.wire import Clock

    sessions = Sessions(Clock(scale=100))  # 30 lab s between heartbeats = 0.3 s here
    server_side, agent_side = socket.socketpair()
    target = SessionTarget("acs", "edge", "arn:ci/1", "mi-1")
    thread = threading.Thread(
        target=sessions.serve, args=(WebSocket(server_side), target, lambda: True))
    started = time.monotonic()
    thread.start()
    client = ecs_agent.WsConn(agent_side, b"")
    first = json.loads(client.receive(2.0) or "{}")
    client.send_text(ecs_agent.ws_message(
        "HeartbeatAckRequest", {"messageId": first["message"]["messageId"]}))
    assert sessions.connected("arn:ci/1")
    second = json.loads(client.receive(2.0) or "{}")
    gap = time.monotonic() - started
    assert second["type"] == "HeartbeatMessage" and 0.25 <= gap < 1.5, gap
    # No more acks: the third heartbeat goes out, then two are outstanding and ACS closes.
    with pytest.raises(ecs_agent.WsClosed, match="1008"):
        for _ in range(10):
            client.receive(2.0)
    thread.join(5)
    assert not sessions.connected("arn:ci/1")
    assert 0.6 <= time.monotonic() - started < 3.0
