"""A re-run on a joined host still finds and repairs drift: speed must not buy blindness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from anywhere_agent.host import keyvalue
from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

CLUSTER = "drift"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aadrift").running(1) as lab:
        url = lab.control_plane_url()
        lab.install_product("n1")
        rollout.write_config(lab, "n1", rollout.node_config(url, lab.region, CLUSTER, "none"))
        activation = rollout.prepare(url, lab.region, CLUSTER, 2)
        code, result, err = rollout.install(lab, "n1", activation)
        assert code == 0, err
        assert result["cloud_verified"] is True
        yield lab


def ecs_config(lab: Lab) -> dict[str, str]:
    return keyvalue.parse_env(lab.exec("n1", ["cat", "/etc/ecs/ecs.config"]).stdout.decode())


def unit(lab: Lab, name: str) -> dict[str, str]:
    out = lab.exec("n1", ["systemctl", "show", name, "-p", "ActiveState,MainPID"]).stdout
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


def test_rerun_after_changed_ecs_config_and_stopped_ecs_repairs_both(lab: Lab) -> None:
    before = ecs_config(lab)
    assert before["ECS_CLUSTER"] == CLUSTER and before["ECS_LOGLEVEL"] == "info"
    # An operator (or a config tool) edits the file, and the agent is stopped by hand.
    drifted = "".join(f"{k}={'debug' if k == 'ECS_LOGLEVEL' else v}\n"
                      for k, v in before.items() if k != "ECS_CLUSTER")
    lab.exec("n1", ["dd", "of=/etc/ecs/ecs.config", "status=none"], input=drifted.encode())
    lab.exec("n1", ["systemctl", "stop", "ecs"])
    assert unit(lab, "ecs")["ActiveState"] == "inactive"

    code, result, err = rollout.install(lab, "n1", None)

    assert code == 0, err
    assert result["changed"] is True
    assert "/etc/ecs/ecs.config" in result["changes"]["ecs-config"]
    assert any(a.startswith("start ecs") for a in result["changes"]["ecs-service"]), result
    assert ecs_config(lab) == before
    assert unit(lab, "ecs")["ActiveState"] == "active"
    # The repaired host is proven joined again, not assumed.
    assert result["cloud_verified"] is True
    assert result["container_instance_status"] == "ACTIVE" and result["agent_connected"]
    code, again, err = rollout.install(lab, "n1", None)
    assert code == 0 and again["changed"] is False, (err, again.get("changes"))


def test_rerun_after_ecs_config_edit_alone_restarts_the_running_agent(lab: Lab) -> None:
    pid = unit(lab, "ecs")["MainPID"]
    text = lab.exec("n1", ["cat", "/etc/ecs/ecs.config"]).stdout.decode()
    lab.exec("n1", ["dd", "of=/etc/ecs/ecs.config", "status=none"],
             input=text.replace("ECS_LOGLEVEL=info", "ECS_LOGLEVEL=warn").encode())

    code, result, err = rollout.install(lab, "n1", None)

    assert code == 0, err
    assert "ecs-config" in result["changes"], result["changes"]
    assert "restart ecs" in result["changes"]["ecs-service"], result["changes"]
    assert ecs_config(lab)["ECS_LOGLEVEL"] == "info"
    # The agent runs with the repaired file: a new process, not the one that read the edit.
    assert unit(lab, "ecs")["MainPID"] not in ("0", pid)
    assert result["cloud_verified"] is True

