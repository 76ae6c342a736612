"""Pinned agent versions from AWS's S3 layout on a real lab host: install puts version A in
place from the versioned keys (signature-checked), a pin to B upgrades it (the plan says so),
a re-run changes no package, and a pin back to A downgrades it; status and the running agents
follow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.lab import rollout
from anywhere_agent.lab.doubles.packaging import ECS_VERSIONS, SSM_VERSIONS
from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

CLUSTER = "pins"
ECS_A, ECS_B = ECS_VERSIONS[0], ECS_VERSIONS[-1]
SSM_A, SSM_B = SSM_VERSIONS[0], SSM_VERSIONS[-1]
S3 = "http://lab-gateway:8080/s3"  # the lab's mirror of AWS's S3 layout (package server)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    from anywhere_agent.lab.services import ensure_repos

    with Lab(name="aapinaws").running(1) as lab:
        url = lab.control_plane_url()
        lab.install_product("n1")
        config = rollout.node_config(url, lab.region, CLUSTER, "none").replace(
            'package_source = "repo"\n',
            f'package_source = "aws"\npackage_base_url = "{S3}"\n'
            f'ecs_agent_version = "{ECS_A}"\nssm_agent_version = "{SSM_A}"\n')
        rollout.write_config(lab, "n1", config)
        # The lab signs its S3 layout with its own key: trust it the way an operator trusts a
        # mirror's key (a file in /etc/anywhere-agent/keys/).
        key = Path(ensure_repos(lab)) / "keys/anywhere-lab-signing.asc"
        lab.ssh("n1", ["mkdir", "-p", "/etc/anywhere-agent/keys"])
        lab.copy_in("n1", key, "/etc/anywhere-agent/keys/lab.asc", 0o644)
        yield lab


def status(lab: Lab) -> dict[str, Any]:
    return json.loads(lab.ssh("n1", ["anywhere-agent", "status", "--json"]).stdout)  # type: ignore[no-any-return]


def agents(lab: Lab) -> tuple[str, str, str]:
    versions = status(lab)["versions"]
    return versions["ecs_init"], versions["ssm_agent"], versions["ecs_agent"] or ""


def step(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in result["steps"] if s["step"] == name)  # type: ignore[no-any-return]


def test_the_pinned_versions_come_from_awss_versioned_keys(lab: Lab) -> None:
    activation = rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 1)
    code, result, err = rollout.install(lab, "n1", activation)
    assert code == 0, (result, err[-2000:])
    ecs, ssm, running = agents(lab)
    assert (ecs, ssm) == (f"{ECS_A}-1", f"{SSM_A}-1") and f"v{ECS_A} " in running
    pinned = status(lab)["pinned_versions"]
    assert pinned["ecs_init"]["state"] == pinned["ssm_agent"]["state"] == "as_pinned"


def test_a_new_pin_upgrades_from_the_versioned_key_and_the_plan_says_so(lab: Lab) -> None:
    flags = ("--ecs-agent-version", ECS_B, "--ssm-agent-version", SSM_B)
    code, planned, err = rollout.install(lab, "n1", None, extra=("--dry-run", *flags))
    assert code == 0, err[-2000:]
    ecs_step = step(planned, "ecs-init-package")
    assert ecs_step["summary"] == (
        f"upgrade amazon-ecs-init {ECS_A}-1 -> {ECS_B}: amazon-ecs-init {ECS_B} from "
        f"{S3}/amazon-ecs-agent-{lab.region}/amazon-ecs-init-{ECS_B}-1.amd64.deb (signed)")
    assert ecs_step["services"] == ["restart ecs"]
    assert f"/amazon-ssm-{lab.region}/{SSM_B}/debian_amd64/" in step(
        planned, "ssm-agent-package")["summary"]
    assert agents(lab)[0] == f"{ECS_A}-1"  # a dry run changes nothing
    code, result, err = rollout.install(lab, "n1", None, extra=flags)
    assert code == 0, (result, err[-2000:])
    ecs, ssm, running = agents(lab)
    assert (ecs, ssm) == (f"{ECS_B}-1", f"{SSM_B}-1") and f"v{ECS_B} " in running
    # install wrote the effective configuration back: a plain re-run keeps B, changes nothing.
    code, again, err = rollout.install(lab, "n1", None, extra=("--dry-run",))
    assert code == 0, err[-2000:]
    assert step(again, "ecs-init-package")["satisfied"] is True
    assert step(again, "ssm-agent-package")["satisfied"] is True


def test_a_pin_to_the_older_version_downgrades_and_the_old_agent_runs(lab: Lab) -> None:
    code, result, err = rollout.install(lab, "n1", None, extra=(
        "--ecs-agent-version", ECS_A, "--ssm-agent-version", SSM_A))
    assert code == 0, (result, err[-2000:])
    ecs, ssm, running = agents(lab)
    assert (ecs, ssm) == (f"{ECS_A}-1", f"{SSM_A}-1") and f"v{ECS_A} " in running
    assert "(pinned " + ECS_A + ")" in lab.ssh("n1", ["anywhere-agent", "status"]).stdout.decode()
