"""Issue 16 on a scripted node: secret file modes, the cause of a failed registration, a
registration finished by a killed run, masked units, uninstall's drain check and leftovers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.errors import (
    ActivationError,
    CloudError,
    ExitCode,
    HostIOError,
    NetworkError,
    RefusedError,
)
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.install.apply import plan, render_plan
from anywhere_agent.node.uninstall import uninstall
from tests.install.runs import run

PROXY = "http://alice:pr0xyPassw0rd@proxy.corp:3128"
PASSWORD = "pr0xyPassw0rd"
SECRET_FILES = ("etc/apt/apt.conf.d/90anywhere-agent-proxy", "etc/ecs/ecs.config",
                "etc/anywhere-agent/proxy/ecs.env",
                "etc/anywhere-agent/proxy/amazon-ssm-agent.env")
DROPINS = ("etc/systemd/system/ecs.service.d/http-proxy.conf",
           "etc/systemd/system/amazon-ssm-agent.service.d/http-proxy.conf")
AGENT_ERROR = ("2026-11-30 01:02:03.4567 ERROR Registration failed due to error registering the "
               "instance with AWS SSM. {code}: {message}\n\tstatus code: {status}, request id: "
               "5f0c2a4e-1b2c-4d5e-8f90-123456789abc\n")


def mode(root: Path, rel: str) -> int:
    return (root / rel).stat().st_mode & 0o777


# -- 1: proxy passwords ----------------------------------------------------------------------

def test_every_file_holding_a_proxy_password_is_0600_and_a_rerun_tightens_loose_ones(
        node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx(**{"proxy.http": PROXY}))
    for rel in SECRET_FILES:
        assert PASSWORD in (system.root / rel).read_text(), rel
        assert mode(system.root, rel) == 0o600, rel
    # systemd shows a unit's Environment= lines to every local user: the drop-ins only name
    # the 0600 files.
    for rel in DROPINS:
        text = (system.root / rel).read_text()
        assert PASSWORD not in text and "Environment=" not in text, rel
        assert "EnvironmentFile=/etc/anywhere-agent/proxy/" in text, rel
    # Files written by an older version (or by hand) at 0644 are tightened by the next run.
    for rel in SECRET_FILES:
        (system.root / rel).chmod(0o644)
    outcome = run(make_ctx(with_code=False, **{"proxy.http": PROXY}))
    assert {"apt-proxy", "ecs-config"} <= set(outcome.changed)
    assert all(mode(system.root, rel) == 0o600 for rel in SECRET_FILES)


def test_files_without_a_password_keep_their_mode_and_are_never_loosened(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx(**{"proxy.http": "http://proxy.corp:3128"}))
    assert mode(system.root, "etc/apt/apt.conf.d/90anywhere-agent-proxy") == 0o644
    (system.root / "etc/ecs/ecs.config").chmod(0o600)
    outcome = run(make_ctx(with_code=False, **{"proxy.http": "http://proxy.corp:3128"}))
    assert "ecs-config" not in outcome.changed
    assert mode(system.root, "etc/ecs/ecs.config") == 0o600


def test_the_plan_and_the_journal_never_show_a_proxy_password(node: Any) -> None:
    system, make_ctx, _ = node
    planned = plan(make_ctx(**{"proxy.http": PROXY}))
    text = render_plan(planned) + json.dumps([p.to_dict() for p in planned])
    assert "alice:***@proxy.corp:3128" in text and PASSWORD not in text
    run(make_ctx(**{"proxy.http": PROXY}))
    assert PASSWORD not in (system.root / "var/lib/anywhere-agent/state.json").read_text()


def test_the_ecs_proxy_dropin_keeps_the_agent_bypass_list_when_no_proxy_is_empty(
        node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx(**{"proxy.http": "http://proxy.corp:3128"}))
    text = (system.root / "etc/anywhere-agent/proxy/ecs.env").read_text()
    bypass = "169.254.169.254,169.254.170.2,/var/run/docker.sock"
    assert f'NO_PROXY="{bypass}"' in text
    assert f'no_proxy="{bypass}"' in text
    run(make_ctx(with_code=False, **{"proxy.http": "http://proxy.corp:3128",
                                     "proxy.no_proxy": "10.0.0.0/8"}))
    text = (system.root / "etc/anywhere-agent/proxy/ecs.env").read_text()
    assert f'NO_PROXY="{bypass},10.0.0.0/8"' in text and text.count("NO_PROXY") == 1


# -- 3: a registration finished by a killed run ------------------------------------------------

def test_a_registration_left_by_a_killed_run_is_journaled_and_clone_detection_still_works(
        node: Any) -> None:
    system, make_ctx, _ = node
    # What a kill during `-register` leaves: the child finished, install never journaled it.
    system(["/usr/bin/amazon-ssm-agent", "-register", "-code", "c", "-id", "i",
            "-region", "us-east-1", "-y"])
    outcome = run(make_ctx(with_code=False))
    ident = json.loads((system.root / "var/lib/anywhere-agent/state.json").read_text())["identity"]
    assert ident["managed_instance_id"] == "mi-00000000000000001"
    assert ident["region"] == "us-east-1" and ident["machine_id"] == "a" * 32
    assert outcome.report["managed_instance_id"] == "mi-00000000000000001"
    assert sum(1 for c in system.calls if "-code" in c) == 1  # recorded, not redone
    (system.root / "etc/machine-id").write_text("b" * 32 + "\n")
    outcome = run(make_ctx())
    assert outcome.report["managed_instance_id"] == "mi-00000000000000002"
    assert "cloned" in outcome.report["previous_identity"]["retired_reason"]


# -- 5: the cause of a failed registration -----------------------------------------------------

@pytest.mark.parametrize(("code", "message", "error", "cause", "fix"), [
    ("ActivationExpired", "Activation has expired", ActivationError, "expired",
     "create a new activation"),
    ("RegistrationLimitExceeded", "Registration limit exceeded", ActivationError, "limit",
     "no registrations left"),
    ("InvalidActivation", "Activation code does not match", ActivationError, "invalid",
     "does not match the ID"),
    ("InvalidActivation", "Activation ID is not valid or does not exist in this region",
     CloudError, "wrong region", "region it was created in"),
    ("InvalidSignatureException", "Signature expired: 20261130T010203Z is now earlier than "
     "20261130T011203Z", CloudError, "clock", "sync it"),
])
def test_each_registration_failure_names_its_own_cause_and_fix(
        node: Any, code: str, message: str, error: type, cause: str, fix: str) -> None:
    system, make_ctx, _ = node
    system.register_error = AGENT_ERROR.format(code=code, message=message, status=400)
    with pytest.raises(error) as err:
        run(make_ctx())
    assert f"({cause})" in err.value.message and code in err.value.message
    assert fix in err.value.fix
    assert "status code" not in err.value.message
    assert sum(1 for c in system.calls if "-code" in c) == 1  # final causes: no retry


def test_throttled_registration_is_retried_within_a_bound_then_succeeds(node: Any) -> None:
    system, make_ctx, _ = node
    attempts: list[int] = []
    real = system._register

    def throttled_twice(argv: tuple[str, ...]) -> Result:
        attempts.append(1)
        if len(attempts) <= 2:
            return Result(argv, 1, AGENT_ERROR.format(code="ThrottlingException",
                                                      message="Rate exceeded", status=400))
        return real(argv)

    system._register = throttled_twice
    outcome = run(make_ctx())
    assert len(attempts) == 3 and outcome.report["managed_instance_id"].startswith("mi-")


def test_throttling_that_never_ends_stops_at_the_bound_with_exit_6(node: Any) -> None:
    system, make_ctx, _ = node
    system.register_error = AGENT_ERROR.format(code="ThrottlingException",
                                               message="Rate exceeded", status=400)
    with pytest.raises(CloudError) as err:
        run(make_ctx())
    assert err.value.exit_code == ExitCode.CLOUD and "throttled" in err.value.message
    assert "5 attempts" in err.value.message
    assert sum(1 for c in system.calls if "-code" in c) == 5


def test_an_unreachable_ssm_endpoint_is_a_network_error_naming_region_and_proxy(
        node: Any) -> None:
    system, make_ctx, _ = node
    system.register_error = (
        "2026-11-30 01:02:03 ERROR Registration failed due to error registering the instance "
        "with AWS SSM. RequestError: send request failed\ncaused by: Post "
        "\"https://ssm.us-east-1.amazonaws.com/\": dial tcp: lookup ssm.us-east-1.amazonaws."
        "com: no such host\n")
    with pytest.raises(NetworkError) as err:
        run(make_ctx())
    assert "proxy" in err.value.fix and "region" in err.value.fix


# -- 6: a masked unit --------------------------------------------------------------------------

def test_starting_a_masked_unit_names_the_unmask(tmp_path: Path) -> None:
    def masked(argv: Any, **kw: Any) -> Result:
        return Result(tuple(argv), 1, "", "Failed to start ecs.service: Unit ecs.service is "
                      "masked.")

    with pytest.raises(HostIOError) as err:
        Host(tmp_path, runner=masked).services.start("ecs")
    assert err.value.fix.startswith("systemctl unmask ecs")


# -- 12: uninstall ---------------------------------------------------------------------------

def test_uninstall_refuses_when_the_agent_does_not_answer_unless_forced(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())
    system.units["ecs"].active = False  # introspection gives no answer now
    with pytest.raises(RefusedError) as err:
        uninstall(make_ctx(with_code=False))
    assert "--force" in err.value.fix and "does not answer" in err.value.message
    assert (system.root / "var/lib/amazon/ssm/registration").exists()
    uninstall(make_ctx(with_code=False), force=True)
    assert not (system.root / "var/lib/amazon/ssm/registration").exists()


def test_uninstall_removes_the_ssm_agent_config_install_created(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx(**{"endpoints.ssm": "http://10.0.0.1:4566"}))
    conf = system.root / "etc/amazon/ssm/amazon-ssm-agent.json"
    assert "10.0.0.1" in conf.read_text()
    uninstall(make_ctx(with_code=False))
    assert not conf.exists()


def test_uninstall_keeps_the_operators_own_ssm_agent_settings(node: Any) -> None:
    system, make_ctx, _ = node
    conf = system.root / "etc/amazon/ssm/amazon-ssm-agent.json"
    conf.parent.mkdir(parents=True)
    conf.write_text(json.dumps({"Agent": {"Region": "us-east-1"}}))
    run(make_ctx(**{"endpoints.ssm": "http://10.0.0.1:4566"}))
    uninstall(make_ctx(with_code=False))
    assert json.loads(conf.read_text()) == {"Agent": {"Region": "us-east-1"}}
