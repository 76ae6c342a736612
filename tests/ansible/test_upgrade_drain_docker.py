"""upgrade.yml on a lab host with real Docker: the drain waits until the task's container, a real
container under dockerd on the host, has stopped; the host then runs a task again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ansible.conftest import AnsibleLab, lab_for_ansible, rolled_out
from tests.conftest import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.ansible]

LAB = "aadrain"
CLUSTER = "aans-drain"
TASK_LABEL = "com.amazonaws.ecs.task-arn"


@pytest.fixture(scope="module")
def docker_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnsibleLab]:
    """One fresh host, joined by rollout.yml with the default docker_source (distro)."""
    overrides = {"ecs_anywhere_node_cluster": CLUSTER, "ecs_anywhere_node_docker_source": "distro"}
    with lab_for_ansible(LAB, 1, tmp_path_factory.mktemp("ansible-drain"), overrides) as alab:
        yield rolled_out(alab)


def task_containers(alab: AnsibleLab) -> list[str]:
    out = alab.lab.exec("n1", ["docker", "ps", "-q", "--no-trunc", "--filter",
                               f"label={TASK_LABEL}"], check=False).stdout.decode()
    return out.split()


def instance(alab: AnsibleLab) -> dict[str, Any]:
    ecs = alab.client("ecs")
    arns = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
    return dict(ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)[
        "containerInstances"][0])


class Timeline(threading.Thread):
    """Samples (seconds, ECS status, runningTasksCount, task containers on the host)."""

    def __init__(self, alab: AnsibleLab) -> None:
        super().__init__(daemon=True)
        self.alab, self.samples, self.stop = alab, list[tuple[float, str, int, int]](), \
            threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set():
            ci = instance(self.alab)
            self.samples.append((round(time.monotonic() - t0, 1), ci["status"],
                                 ci["runningTasksCount"], len(task_containers(self.alab))))
            time.sleep(0.5)


def test_upgrade_drain_waits_until_the_real_task_containers_have_stopped(
        docker_lab: AnsibleLab) -> None:
    first = wait_for("a task container before the upgrade", lambda: task_containers(docker_lab))
    wait_for("ECS to count the task", lambda: instance(docker_lab)["runningTasksCount"] == 1)
    timeline = Timeline(docker_lab)
    timeline.start()
    try:
        run = docker_lab.run("upgrade.yml", extra={"ecs_anywhere_node_drain_poll_seconds": 1})
    finally:
        timeline.stop.set()
        timeline.join()
    assert run.rc == 0, run.output[-6000:]
    samples = timeline.samples
    draining = [s for s in samples if s[1] == "DRAINING"]
    assert draining, samples
    # While DRAINING the container ran for a while, and ECS counted it ...
    assert any(s[3] == 1 and s[2] == 1 for s in draining), samples
    # ... and the instance left DRAINING only after the container had stopped.
    last_draining = samples.index(draining[-1])
    after = samples[last_draining + 1:]
    assert after and after[0][1] == "ACTIVE", samples
    assert draining[-1][3] == 0 and draining[-1][2] == 0, samples
    # Back in service the host runs a task again, in a new container.
    again = wait_for("a task container after the upgrade", lambda: task_containers(docker_lab))
    assert set(again).isdisjoint(first)
