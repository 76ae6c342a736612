"""wait and drain poll within their bound: a throttled or 5xx round is retried, not fatal.

botocore gives up on a call after its attempts, or at once when a long poll has used up its
retry quota; the poll must then try again on its next round. AWS_MAX_ATTEMPTS=1 makes botocore
give up at the first error, so a short outage stands for "botocore ran out" deterministically;
standard mode, because adaptive mode's client-side rate limiter would stretch one call across
a short throttling outage and hide what the poll does.
"""

from __future__ import annotations

import threading
import time

import pytest

from anywhere_agent.errors import ExitCode
from anywhere_agent.lab.control_plane.faults import FaultRule


@pytest.fixture(autouse=True)
def _few_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")


def _outage(lab, rule: FaultRule, seconds: float, after=None) -> threading.Thread:
    """Answer every matching call with the fault for `seconds`, once `after()` is true.

    Without `after` the fault is on before this returns: on a loaded machine a thread could
    otherwise switch it on only after the command's first poll.
    """
    if after is None:
        lab.admin.set_faults([rule])

    def run() -> None:
        deadline = time.monotonic() + 30
        while after is not None and not after() and time.monotonic() < deadline:
            time.sleep(0.05)
        if after is not None:
            lab.admin.set_faults([rule])
        time.sleep(seconds)
        lab.admin.clear_faults()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["throttle", "5xx"])
def test_wait_rides_out_an_ecs_outage_and_returns_when_it_ends(cli, lab, kind):
    lab.admin.seed(2, cluster="prod")
    outage = _outage(lab, FaultRule(kind=kind, service="ecs", status=503), 3.0)
    time.sleep(0.2)  # the outage is on before the first poll
    started = time.monotonic()
    result = cli("wait", "--hosts", "seed-0,seed-1", "--cluster", "prod", "--timeout", "60s",
                 "--interval", "1s", "--json")
    outage.join()
    assert result.exit_code == 0, result.stderr
    assert [h["reason"] for h in result.json()["hosts"]] == ["ready", "ready"]
    assert time.monotonic() - started >= 2.5  # it really waited through the outage
    assert sum(lab.admin.calls().faulted.get("ecs", {}).values()) >= 2


def test_wait_that_never_gets_an_answer_times_out_naming_the_last_error(cli, lab):
    lab.admin.seed(1, cluster="prod")
    lab.admin.set_faults([FaultRule(kind="5xx", service="ecs", status=503)])
    try:
        result = cli("wait", "--hosts", "seed-0", "--cluster", "prod", "--timeout", "3s",
                     "--interval", "1s")
    finally:
        lab.admin.clear_faults()
    assert result.exit_code == ExitCode.TIMEOUT, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "seed-0: never seen" in line and "the last poll failed" in line and "503" in line


def test_drain_rides_out_a_describe_outage_while_tasks_leave(cli, clients, lab):
    seeded = lab.admin.seed(1, cluster="prod")
    lab.admin.set_running_tasks("prod", seeded.container_instance_arns[0], 2,
                                drain_delay_seconds=4)
    outage = _outage(lab, FaultRule(kind="5xx", service="ecs",
                                    operation="DescribeContainerInstances", status=503), 2.5,
                     after=lambda: lab.calls("ecs", "UpdateContainerInstancesState") > 0)
    result = cli("drain", "--hosts", "seed-0", "--cluster", "prod", "--timeout", "60s",
                 "--interval", "1s", "--json")
    outage.join()
    assert result.exit_code == 0, result.stderr
    assert result.json()["hosts"][0]["running_tasks"] == 0
    assert lab.admin.calls().faulted.get("ecs", {}).get("DescribeContainerInstances", 0) >= 1


def test_drain_that_never_gets_an_answer_times_out_naming_the_last_error(cli, lab):
    seeded = lab.admin.seed(1, cluster="prod")
    lab.admin.set_running_tasks("prod", seeded.container_instance_arns[0], 2,
                                drain_delay_seconds=600)
    outage = _outage(lab, FaultRule(kind="5xx", service="ecs",
                                    operation="DescribeContainerInstances", status=503), 6.0,
                     after=lambda: lab.calls("ecs", "UpdateContainerInstancesState") > 0)
    result = cli("drain", "--hosts", "seed-0", "--cluster", "prod", "--timeout", "3s",
                 "--interval", "1s")
    outage.join()
    assert result.exit_code == ExitCode.TIMEOUT, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    # The outage may begin just after the first poll: then that poll's count is named.
    assert "seed-0: not confirmed" in line or "seed-0: 2 tasks" in line, line
    assert "the last poll failed" in line and "503" in line, line
