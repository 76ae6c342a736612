"""Probes and remediation on a fake clock and a fake systemd: bounded, never on healthy units."""

from __future__ import annotations

from typing import TYPE_CHECKING

from anywhere_agent.health.model import Status
from anywhere_agent.supervise.probes import DEREGISTERED_SUMMARY, REINSTALL_FIX
from anywhere_agent.supervise.remedy import backoff_seconds

if TYPE_CHECKING:
    from conftest import Node


def rounds(node: Node, sup, n: int, every: float = 15.0):  # type: ignore[no-untyped-def]
    health = None
    for _ in range(n):
        health = sup.step()
        node.clock.advance(every)
        if node.clock.mono % 600 < every:
            node.rotate_credentials()  # the SSM agent rewrites its credentials regularly
    return health


def test_healthy_node_is_ok_and_nothing_is_ever_restarted(node: Node) -> None:
    sup = node.supervisor()
    health = rounds(node, sup, 1000)  # more than 4 hours of 15 s probes
    assert health.status is Status.OK, health.summary
    assert node.systemd.calls == []
    assert health.instance_id == "mi-0123456789abcdef0"
    assert health.container_instance_arn.endswith("/0123456789abcdef")


def test_hung_ecs_agent_is_restarted_after_n_probes_and_not_before(node: Node) -> None:
    sup = node.supervisor()
    rounds(node, sup, 3)
    node.ecs.mode = "hung"
    for probe in (1, 2):
        health = rounds(node, sup, 1)
        assert node.systemd.restarts("ecs") == 0, f"restarted after {probe} failed probes"
        assert health.check("ecs_introspection").status is Status.WARNING
    health = rounds(node, sup, 1)
    assert node.systemd.restarts("ecs") == 1
    assert node.systemd.calls == [("systemctl", "--no-block", "restart", "ecs")]
    check = health.check("ecs_introspection")
    assert check.status is Status.CRITICAL and check.failing_for == 3
    assert node.systemd.restarts("amazon-ssm-agent") == 0


def test_recovery_after_a_restart_returns_the_node_to_ok(node: Node) -> None:
    node.systemd.on_restart = lambda unit: setattr(node.ecs, "mode", "ok")
    sup = node.supervisor()
    node.ecs.mode = "hung"
    health = rounds(node, sup, 3)
    assert health.status is Status.CRITICAL
    assert node.systemd.restarts("ecs") == 1
    health = rounds(node, sup, 1)
    assert health.status is Status.OK, health.summary
    assert health.check("ecs_introspection").failing_for == 0
    assert node.state()["status"] == "OK"
    rounds(node, sup, 300)
    assert node.systemd.restarts("ecs") == 1


def test_crash_loop_backs_off_exponentially_and_trips_the_breaker(node: Node) -> None:
    restart_times: list[float] = []
    node.systemd.on_restart = lambda unit: restart_times.append(node.clock.mono)
    sup = node.supervisor()
    node.ecs.mode = "hung"  # every restart comes back hung: a crash loop
    health = rounds(node, sup, 240)  # one hour
    assert len(restart_times) == 4  # max_restarts_per_hour
    gaps = [b - a for a, b in zip(restart_times, restart_times[1:])]
    # 3 failed probes (45 s) after the first restart, then the backoff dominates: 60 s, 120 s.
    assert gaps == [45.0, 60.0, 120.0], gaps
    breaker = health.check("remedy_ecs")
    assert breaker.status is Status.CRITICAL and breaker.reason == "breaker_open"
    assert health.status is Status.CRITICAL
    assert "journalctl -u ecs" in breaker.fix


def test_breaker_closes_when_the_oldest_restart_leaves_the_hour(node: Node) -> None:
    restart_times: list[float] = []
    node.systemd.on_restart = lambda unit: restart_times.append(node.clock.mono)
    sup = node.supervisor()
    node.ecs.mode = "hung"
    rounds(node, sup, 240)
    assert len(restart_times) == 4
    rounds(node, sup, 10)  # past the first restart + 3600 s
    assert len(restart_times) == 5
    assert restart_times[4] - restart_times[0] == 3600
    rounds(node, sup, 40)  # still hung: the backoff keeps growing (480 s after the 5th)
    assert len(restart_times) == 6
    assert restart_times[5] - restart_times[4] >= 480


def test_a_brief_recovery_does_not_let_restarts_exceed_the_hourly_cap(node: Node) -> None:
    restart_times: list[float] = []

    def restart(unit: str) -> None:
        restart_times.append(node.clock.mono)
        node.ecs.mode = "ok"  # comes back healthy for one probe, then hangs again

    node.systemd.on_restart = restart
    sup = node.supervisor()
    for _ in range(240 * 3):
        if node.ecs.mode == "ok" and restart_times and node.clock.mono > restart_times[-1] + 15:
            node.ecs.mode = "hung"
        if not restart_times:
            node.ecs.mode = "hung"
        rounds(node, sup, 1)
    for i, t in enumerate(restart_times):
        in_hour = [u for u in restart_times if t <= u < t + 3600]
        assert len(in_hour) <= 4, (i, restart_times)
    assert len(restart_times) >= 8


def test_backoff_doubles_from_the_initial_wait_and_stops_at_the_maximum(node: Node) -> None:
    remedy = node.supervisor().remedies[0]
    assert [remedy.backoff(n) for n in range(1, 8)] == [30, 60, 120, 240, 480, 600, 600]
    assert backoff_seconds(10**9, 30.0, 600.0) == 600.0  # no overflow after years of restarts
    assert backoff_seconds(0, 30.0, 600.0) == 30.0


def test_an_ecs_unit_that_systemd_reports_failed_is_left_to_systemd(node: Node) -> None:
    sup = node.supervisor()
    node.ecs.mode = "hung"
    node.systemd.set("ecs", active="failed", sub="failed", restarts=10)
    health = rounds(node, sup, 50)
    assert node.systemd.calls == []
    unit = health.check("unit_ecs")
    assert unit.status is Status.CRITICAL and "reset-failed ecs" in unit.fix


def test_stale_credentials_with_a_running_ssm_agent_say_deregistered_and_restart_it_bounded(
        node: Node) -> None:
    sup = node.supervisor()
    health = None
    for _ in range(240 * 3):  # three hours without rotation
        health = sup.step()
        node.clock.advance(15)
    creds = health.check("ssm_credentials")
    assert creds.status is Status.CRITICAL
    assert creds.summary.startswith(DEREGISTERED_SUMMARY)
    assert creds.fix == REINSTALL_FIX
    restarts = node.systemd.restarts("amazon-ssm-agent")
    assert 1 <= restarts <= 4 * 3
    assert node.systemd.restarts("ecs") == 0
    # Never re-registers on its own: no call but the bounded restarts.
    assert {c for c in node.systemd.calls} == {
        ("systemctl", "--no-block", "restart", "amazon-ssm-agent")}


def test_missing_registration_is_critical_with_the_reinstall_fix_and_no_restart(
        node: Node) -> None:
    node.host.remove("/var/lib/amazon/ssm/registration")
    sup = node.supervisor()
    health = None
    for _ in range(300):
        health = sup.step()
        node.clock.advance(15)  # credentials go stale too: still no restart without a registration
    reg = health.check("ssm_registration")
    assert reg.status is Status.CRITICAL and "new activation" in reg.fix
    assert node.systemd.calls == []


def test_a_probe_that_raises_is_unknown_and_the_other_probes_still_run(node: Node) -> None:
    class Broken:
        name = "broken"
        interval = 15.0

        def __call__(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    sup = node.supervisor()
    from anywhere_agent.supervise.schedule import Periodic

    sup.schedules.append(Periodic(Broken(), node.clock))
    health = rounds(node, sup, 2)
    broken = health.check("broken")
    assert broken.status is Status.UNKNOWN and "boom" in broken.summary
    assert health.check("unit_ecs").status is Status.OK
    assert health.status is Status.UNKNOWN


def test_each_probe_runs_on_its_own_schedule(node: Node) -> None:
    sup = node.supervisor()
    sup.schedules[3].probe.interval = 60.0  # introspection every minute
    for _ in range(8):
        sup.step()
        node.clock.advance(15)
    assert node.ecs.requests == 2
