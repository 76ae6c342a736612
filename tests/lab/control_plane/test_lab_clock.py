"""The lab clock (scale and offset on an injected source) and the long poll that uses it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from anywhere_agent.lab.control_plane.server import ControlPlane
from anywhere_agent.lab.control_plane.ssm import PING_TIMEOUT, SsmAnywhere
from anywhere_agent.lab.control_plane.wire import Clock

if TYPE_CHECKING:
    from conftest import Agent, Host


class Source:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_scaled_clock_runs_lab_time_faster_from_where_it_started() -> None:
    source = Source()
    clock = Clock(source, scale=20)
    assert clock.now() == 1_000.0
    source.now += 3  # three real seconds...
    assert clock.now() == 1_060.0  # ...are a lab minute
    assert clock.real_seconds(300) == 15.0  # a 5-minute ping every 15 s
    assert clock.wall() == 1_003.0


def test_advance_adds_lab_time_and_reset_returns_to_the_wall_clock() -> None:
    source = Source()
    clock = Clock(source, scale=2)
    clock.advance(100)
    source.now += 10
    assert clock.now() == 1_000.0 + 20 + 100
    clock.reset()
    assert clock.now() == source.now and clock.offset == 0


def test_a_non_positive_scale_is_refused() -> None:
    with pytest.raises(ValueError):
        Clock(Source(), scale=0)


def test_ping_status_uses_the_threshold_in_lab_time_under_a_scaled_clock() -> None:
    source = Source()
    ssm = SsmAnywhere(Clock(source, scale=60), PING_TIMEOUT, 1800, lambda role: True)
    [instance_id] = ssm.seed("us-east-1", 1, online=True)
    instance = ssm.instances[instance_id]
    source.now += 10  # 600 lab seconds: twice the agent's longest gap, still Online
    assert ssm.ping_status(instance) == "Online"
    source.now += 5.1  # past 900 lab seconds
    assert ssm.ping_status(instance) == "ConnectionLost"


def test_get_messages_holds_an_empty_poll_for_the_long_poll_in_lab_time(
        plane: ControlPlane, host: Host, agent: Agent) -> None:
    plane.ssm.long_poll_seconds = 0.6
    started = time.monotonic()
    answer = agent.call("EC2WindowsMessageDeliveryService.GetMessages",
                        {"Destination": host.instance_id, "MessagesRequestId": "r-1",
                         "VisibilityTimeoutInSeconds": 10},
                        credential=host.credentials["AccessKeyId"])
    held = time.monotonic() - started
    assert answer.status == 200 and answer.body["Messages"] == []
    assert answer.body["MessagesRequestId"] == "r-1"
    assert held >= 0.55, held


def test_a_reset_ends_held_polls_at_once(plane: ControlPlane, host: Host, agent: Agent) -> None:
    import threading

    plane.ssm.long_poll_seconds = 30
    done: list[float] = []

    def poll() -> None:
        started = time.monotonic()
        agent.call("EC2WindowsMessageDeliveryService.GetMessages",
                   {"Destination": host.instance_id},
                   credential=host.credentials["AccessKeyId"])
        done.append(time.monotonic() - started)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    plane.ssm.reset()
    thread.join(5)
    assert done and done[0] < 5


def test_an_activations_wall_clock_expiry_counts_in_lab_time_under_a_scaled_clock() -> None:
    """The operator's ExpirationDate is a wall-clock instant; at 20x the lab clock is far
    ahead of it after a few minutes, yet a 2-hour activation is accepted and lasts 2 lab
    hours (6 wall minutes), not a moment."""
    source = Source()
    ssm = SsmAnywhere(Clock(source, scale=20), PING_TIMEOUT, 1800, lambda role: True)
    source.now += 600  # ten wall minutes in: the lab clock is 200 lab minutes ahead
    created = ssm._op_CreateActivation(
        "us-east-1", {"IamRole": "ecsAnywhereRole", "ExpirationDate": source.now + 7200},
        None)  # type: ignore[arg-type]
    activation = ssm.activations[created["ActivationId"]]
    assert activation.expiration == ssm.clock.now() + 7200
    source.now += 359  # 7180 lab seconds later: still valid
    assert ssm.clock.now() < activation.expiration
    source.now += 2  # past 2 lab hours
    assert ssm.clock.now() >= activation.expiration
