"""The install's bounded polls: short first waits that grow to a cap, bounded in time."""

from __future__ import annotations

from typing import Any

import pytest

from anywhere_agent.errors import NotJoinedError
from anywhere_agent.install.poll import poll
from anywhere_agent.install.steps import VerifyJoinStep


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_waits_start_short_and_double_up_to_the_cap() -> None:
    t = FakeTime()
    answers = iter([None] * 6 + ["joined"])
    assert poll(lambda: next(answers), seconds=30, clock=t.clock, sleep=t.sleep,
                first=0.1, cap=0.5) == "joined"
    assert t.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])


def test_a_probe_that_never_answers_gives_up_after_its_time_bound() -> None:
    t = FakeTime()
    calls = []
    assert poll(lambda: calls.append(1), seconds=5, clock=t.clock, sleep=t.sleep,
                first=0.1, cap=0.5) is None
    assert 5.0 < t.now <= 5.6
    assert len(calls) < 20


def test_the_join_is_noticed_a_tenth_of_a_second_after_introspection_answers(node: Any) -> None:
    _, make_ctx, _ = node
    ctx = make_ctx()
    t = FakeTime()
    meta = (b'{"Cluster": "prod", "ContainerInstanceArn": '
            b'"arn:aws:ecs:us-east-1:123456789012:container-instance/prod/abc"}')
    answers = iter([(0, b""), (200, meta)])
    ctx.http_get = lambda url, timeout: next(answers)
    ctx.clock, ctx.sleep = t.clock, t.sleep
    ctx.clients_factory = None  # no host credentials: the cloud half is only noted
    VerifyJoinStep().apply(ctx, VerifyJoinStep().check(ctx))  # type: ignore[arg-type]
    assert t.sleeps == [0.1]
    assert ctx.report["container_instance_arn"].endswith("/prod/abc")


def test_no_join_within_the_timeout_names_the_ecs_log(node: Any) -> None:
    _, make_ctx, _ = node
    ctx = make_ctx(join_timeout_seconds=3)
    t = FakeTime()
    ctx.http_get = lambda url, timeout: (0, b"")
    ctx.clock, ctx.sleep = t.clock, t.sleep
    with pytest.raises(NotJoinedError) as raised:
        VerifyJoinStep().apply(ctx, VerifyJoinStep().check(ctx))  # type: ignore[arg-type]
    assert "within 3 s" in raised.value.message and "ecs-agent.log" in raised.value.fix
    assert t.now <= 3.6
