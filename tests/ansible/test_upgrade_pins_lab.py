"""Pinned agent versions on real lab hosts: a rollout pinned to version A, an upgrade to B whose
ECS agent crashes at start on the first host (its batch rolls back to A and the playbook stops
with the reason), then the same upgrade without the fault (every host on B)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from anywhere_agent.lab.doubles.packaging import ECS_VERSIONS, SSM_VERSIONS
from tests.ansible.conftest import AnsibleLab, lab_for_ansible, rolled_out

pytestmark = [pytest.mark.lab, pytest.mark.ansible]

LAB = "aapin"
CLUSTER = "aans-pins"
ECS_A, ECS_B = ECS_VERSIONS[0], ECS_VERSIONS[-1]
SSM_A, SSM_B = SSM_VERSIONS[0], SSM_VERSIONS[-1]
CRASH_MARKER = "/run/anywhere-lab/faults/ecs-crash"


@pytest.fixture(scope="module")
def pinned_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnsibleLab]:
    """Two fresh hosts joined by rollout.yml with both agents pinned to version A."""
    # Long enough for a rollback's join proof on a loaded machine.
    overrides = {"ecs_anywhere_node_cluster": CLUSTER,
                 "ecs_anywhere_node_join_timeout_seconds": 60}
    with lab_for_ansible(LAB, 2, tmp_path_factory.mktemp("ansible-pins"), overrides) as alab:
        # Only the rollout gets the role's pin variables: as extra variables they would outrank
        # the upgrade's own pins (and its rollback's).
        yield rolled_out(alab, ecs_anywhere_node_ecs_agent_version=ECS_A,
                         ecs_anywhere_node_ssm_agent_version=SSM_A)


def status(alab: AnsibleLab, host: str) -> dict[str, Any]:
    out = alab.lab.exec(host, ["/usr/local/bin/anywhere-agent", "status", "--json"]).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def installed(alab: AnsibleLab, host: str) -> tuple[str, str, str]:
    """(ecs-init package, SSM agent package, the version the running ECS agent reports)."""
    st = status(alab, host)
    return (st["versions"]["ecs_init"], st["versions"]["ssm_agent"],
            st["versions"]["ecs_agent"] or "")


def upgrade(alab: AnsibleLab) -> Any:
    return alab.run("upgrade.yml", extra={"upgrade_batches": [1, "100%"],
                                          "upgrade_ecs_agent_version": ECS_B,
                                          "upgrade_ssm_agent_version": SSM_B})


def test_the_pinned_rollout_installs_version_a_and_status_says_so(pinned_lab: AnsibleLab) -> None:
    for host in ("n1", "n2"):
        ecs, ssm, running = installed(pinned_lab, host)
        assert (ecs, ssm) == (f"{ECS_A}-1", f"{SSM_A}-1")
        assert f"v{ECS_A} " in running
        pinned = status(pinned_lab, host)["pinned_versions"]
        assert pinned["ecs_init"] == {"package": "amazon-ecs-init", "installed": f"{ECS_A}-1",
                                      "pinned": ECS_A, "running": ECS_A, "state": "as_pinned",
                                      "matches": True}
        assert pinned["ssm_agent"]["matches"] is True
    text = pinned_lab.lab.exec("n1", ["/usr/local/bin/anywhere-agent", "status"]).stdout.decode()
    assert f"amazon-ecs-init {ECS_A}-1 (pinned {ECS_A})" in text


def test_a_failed_gate_rolls_the_batch_back_to_a_and_stops_with_the_reason(
        pinned_lab: AnsibleLab) -> None:
    # Version B's ECS agent dies at start on n1 (a bad release on this host); A runs there.
    pinned_lab.lab.exec("n1", ["sh", "-c", f"mkdir -p {CRASH_MARKER.rsplit('/', 1)[0]} && "
                                           f"echo {ECS_B} > {CRASH_MARKER}"])
    try:
        run = upgrade(pinned_lab)
    finally:
        pinned_lab.lab.exec("n1", ["rm", "-f", CRASH_MARKER])
    assert run.rc != 0, run.output[-6000:]
    said = run.output[run.output.find("upgrade failed on n1 at"):][:3000]
    assert said, run.output[-6000:]
    assert "no ContainerInstanceArn" in said, said  # the reason: B never joined
    assert f"rolled back to amazon-ecs-init {ECS_A}-1, amazon-ssm-agent {SSM_A}-1" in said, said
    assert run.recap()["n1"]["rescued"] == 1
    assert "n2" not in run.recap()  # the playbook stopped after the failed batch
    ecs, ssm, running = installed(pinned_lab, "n1")
    assert (ecs, ssm) == (f"{ECS_A}-1", f"{SSM_A}-1") and f"v{ECS_A} " in running
    assert installed(pinned_lab, "n2")[:2] == (f"{ECS_A}-1", f"{SSM_A}-1")
    ecs_client = pinned_lab.client("ecs")
    arns = ecs_client.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
    cis = ecs_client.describe_container_instances(cluster=CLUSTER, containerInstances=arns)
    assert {c["status"] for c in cis["containerInstances"]} == {"ACTIVE"}


def test_the_upgrade_moves_every_batch_to_b_and_status_shows_b(pinned_lab: AnsibleLab) -> None:
    run = upgrade(pinned_lab)
    assert run.rc == 0, run.output[-6000:]
    for host in ("n1", "n2"):
        ecs, ssm, running = installed(pinned_lab, host)
        assert (ecs, ssm) == (f"{ECS_B}-1", f"{SSM_B}-1")
        assert f"v{ECS_B} " in running
        pinned = status(pinned_lab, host)["pinned_versions"]
        assert pinned["ecs_init"]["pinned"] == ECS_B and pinned["ecs_init"]["matches"] is True
        assert pinned["ssm_agent"]["pinned"] == SSM_B and pinned["ssm_agent"]["matches"] is True
