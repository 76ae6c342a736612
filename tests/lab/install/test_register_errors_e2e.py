"""A refused registration on a real lab host names its cause, read from the SSM agent's own
error output, with its own fix and exit code; throttling is retried within a bound."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from anywhere_agent.errors import ExitCode
from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab
from anywhere_agent.secret import Secret

pytestmark = pytest.mark.lab

CLUSTER = "regerr"
HOST = "n1"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aaregerr").running(1) as lab:
        rollout.stage(lab, [HOST], CLUSTER)
        yield lab


def fresh(lab: Lab, count: int = 1) -> rollout.LabActivation:
    return rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, count)


def refused(lab: Lab, act: rollout.LabActivation) -> tuple[int, dict[str, Any]]:
    code, result, err = rollout.install(lab, HOST, act)
    assert act.code.reveal() not in str(result) + err
    return code, result


def test_expired_exhausted_and_mistyped_activations_each_name_their_cause(lab: Lab) -> None:
    expired = fresh(lab)
    lab.fault("expire-activation", activation_id=expired.activation_id)
    code, result = refused(lab, expired)
    assert code == ExitCode.ACTIVATION and "(expired)" in result["message"], result
    assert "ActivationExpired" in result["message"] and "create a new activation" in result["fix"]

    mistyped = rollout.LabActivation(fresh(lab).activation_id, Secret("WRONGCODE0123456789"))
    code, result = refused(lab, mistyped)
    assert code == ExitCode.ACTIVATION and "(invalid)" in result["message"], result
    assert "does not match" in result["fix"]

    single = fresh(lab, 1)
    code, _, err = rollout.install(lab, HOST, single)
    assert code == 0, err
    lab.ssh(HOST, ["anywhere-agent", "uninstall", "--force"])
    rollout.write_config(lab, HOST, rollout.node_config(lab.control_plane_url(), lab.region,
                                                        CLUSTER))
    code, result = refused(lab, single)
    assert code == ExitCode.ACTIVATION and "(limit)" in result["message"], result
    assert "RegistrationLimitExceeded" in result["message"]
    assert "no registrations left" in result["fix"]
    assert "status code" not in result["message"]


def test_throttled_registration_is_retried_then_refused_with_exit_6_when_it_lasts(
        lab: Lab) -> None:
    lab.fault("throttle", service="ssm", operation="RegisterManagedInstance", rate=1.0)
    try:
        code, result = refused(lab, fresh(lab))
    finally:
        lab.fault("throttle", on=False, service="ssm", operation="RegisterManagedInstance")
    assert code == ExitCode.CLOUD and "(throttled)" in result["message"], result
    assert "5 attempts" in result["message"] and "stagger" in result["fix"]
    # Throttling that passes is absorbed by the retries: install converges.
    lab.fault("throttle", service="ssm", operation="RegisterManagedInstance", rate=0.5)
    try:
        code, result, err = rollout.install(lab, HOST, fresh(lab))
    finally:
        lab.fault("throttle", on=False, service="ssm", operation="RegisterManagedInstance")
    assert code == 0, err
    assert result["managed_instance_id"].startswith("mi-")
