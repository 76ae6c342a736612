"""Install plan/apply on a temp root with a scripted node: convergence, re-runs, undo, identity."""

from __future__ import annotations

import json
from typing import Any

import pytest

from anywhere_agent.errors import ActivationError, CloudError, LockedError
from anywhere_agent.install.apply import plan, render_plan
from anywhere_agent.install.journal import install_lock
from anywhere_agent.install.steps import all_steps
from tests.install.runs import run, run_logged

CODE = "Sup3rSecretActivationCode"


def test_fresh_install_converges_and_joins(node: Any) -> None:
    system, make_ctx, _ = node
    outcome = run(make_ctx())
    assert outcome.report["container_instance_arn"].startswith("arn:aws:ecs:")
    assert outcome.report["cloud_verified"] is True
    assert {"amazon-ssm-agent", "amazon-ecs-init"} <= set(system.packages)
    assert system.units["ecs"].active and system.units["ecs"].enabled
    assert system.units["anywhere-agent"].active
    root = system.root
    ecs = (root / "etc/ecs/ecs.config").read_text()
    assert "ECS_CLUSTER=prod" in ecs
    var = (root / "var/lib/ecs/ecs.config").read_text()
    assert "ECS_EXTERNAL=true" in var and "AWS_DEFAULT_REGION=us-east-1" in var
    state = json.loads((root / "var/lib/anywhere-agent/state.json").read_text())
    assert state["identity"]["managed_instance_id"] == "mi-00000000000000001"
    assert state["last_run"]["result"] == "ok"


def test_rerun_changes_nothing_and_restarts_nothing(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())
    restarts = {name: u.restarts for name, u in system.units.items()}
    calls_before = len(system.calls)
    outcome = run(make_ctx(with_code=False))
    assert outcome.changed == {}
    assert {name: u.restarts for name, u in system.units.items()} == restarts
    mutating = [c for c in system.calls[calls_before:]
                if c[0] in ("apt-get", "/usr/bin/amazon-ssm-agent")
                or (c[0] == "systemctl" and c[1] != "show")]
    assert mutating == []


def test_changed_config_restarts_only_the_units_that_read_it(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())
    before = {name: u.restarts for name, u in system.units.items()}
    outcome = run(make_ctx(with_code=False, ecs_attributes="rack=r12"))
    assert "ecs-config" in outcome.changed
    assert system.units["ecs"].restarts == before["ecs"] + 1
    assert system.units["amazon-ssm-agent"].restarts == before["amazon-ssm-agent"]
    assert 'ECS_INSTANCE_ATTRIBUTES={"rack":"r12"}' in \
        (system.root / "etc/ecs/ecs.config").read_text()


def test_restart_recorded_before_a_kill_is_done_by_the_next_run(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())
    # A run that wrote ecs.config and died before restarting ecs: the journal says so.
    ctx = make_ctx(with_code=False, cluster="prod", ecs_loglevel="debug")
    step = next(s for s in all_steps() if s.name == "ecs-config")
    step.apply(ctx, step.check(ctx))  # type: ignore[arg-type]
    before = system.units["ecs"].restarts
    run(make_ctx(with_code=False, ecs_loglevel="debug"))
    assert system.units["ecs"].restarts == before + 1


def test_duplicated_keys_from_the_official_script_collapse_to_one(node: Any) -> None:
    system, make_ctx, _ = node
    cfg_file = system.root / "etc/ecs/ecs.config"
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_text("ECS_CLUSTER=prod\nECS_CLUSTER=prod\nMY_KEY=1\n")
    run(make_ctx())
    text = cfg_file.read_text()
    assert text.count("ECS_CLUSTER=") == 1 and "MY_KEY=1" in text


def test_bad_activation_leaves_the_host_as_it_was(node: Any) -> None:
    system, make_ctx, _ = node
    system.register_error = ("Registration failed due to error registering the instance with "
                             "AWS SSM. InvalidActivation: activation expired")
    files_before = sorted(p.relative_to(system.root) for p in system.root.rglob("*")
                          if "var/lib/anywhere-agent" not in str(p))
    with pytest.raises(ActivationError) as err:
        run(make_ctx())
    assert "create a new activation" in err.value.fix
    assert system.packages == {}
    files_after = sorted(p.relative_to(system.root) for p in system.root.rglob("*")
                         if "var/lib/anywhere-agent" not in str(p))
    assert files_after == files_before
    assert CODE not in str(err.value)


def test_missing_cluster_clears_the_new_registration_and_names_the_orphan(node: Any) -> None:
    system, make_ctx, backend = node
    backend.clusters = set()
    with pytest.raises(CloudError) as err:
        run(make_ctx())
    assert "does not exist" in err.value.message and "mi-00000000000000001" in err.value.message
    assert not (system.root / "var/lib/amazon/ssm/registration").exists()
    assert "amazon-ssm-agent" not in system.packages


def test_cloned_host_registers_its_own_identity_and_reports_the_old(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())
    (system.root / "etc/machine-id").write_text("b" * 32 + "\n")
    outcome = run(make_ctx())
    assert outcome.report["managed_instance_id"] == "mi-00000000000000002"
    assert outcome.report["previous_identity"]["managed_instance_id"] == "mi-00000000000000001"
    assert "cloned" in outcome.report["previous_identity"]["retired_reason"]


def test_centrally_deregistered_host_is_registered_again(node: Any) -> None:
    _, make_ctx, backend = node
    run(make_ctx())
    backend.ssm_known.clear()  # DeregisterManagedInstance happened centrally
    outcome = run(make_ctx())
    assert outcome.report["managed_instance_id"] == "mi-00000000000000002"
    assert "deregistered centrally" in outcome.report["previous_identity"]["retired_reason"]


def test_registration_needed_without_a_code_fails_before_touching_anything(node: Any) -> None:
    system, make_ctx, _ = node
    with pytest.raises(ActivationError):
        run(make_ctx(with_code=False))
    assert system.packages == {}


def test_second_run_waits_for_the_lock(node: Any) -> None:
    _, make_ctx, _ = node
    ctx = make_ctx()
    with install_lock(ctx.host), pytest.raises(LockedError):
        run(make_ctx())


def test_dry_run_plan_changes_nothing(node: Any) -> None:
    system, make_ctx, _ = node
    planned = plan(make_ctx())
    text = render_plan(planned)
    assert "ssm-agent-package" in text and "+ECS_CLUSTER=prod" in text
    assert system.packages == {}
    assert not (system.root / "etc/ecs").exists()
    assert all(c[0] in ("dpkg-query", "systemctl") and (c[0] != "systemctl" or c[1] == "show")
               for c in system.calls)


def test_progress_prints_one_line_per_step_when_not_a_tty(node: Any) -> None:
    _, make_ctx, _ = node
    _, text = run_logged(make_ctx())
    lines = text.strip().splitlines()
    assert len(lines) == len([s for s in all_steps() if s.applies(make_ctx())])
    assert all(line.startswith("step=") for line in lines)
    assert CODE not in text
