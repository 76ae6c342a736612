"""What makes install fast without weakening it: one package transaction for both agents, one
index refresh per run; each later step still checks what the earlier one did."""

from __future__ import annotations

from typing import Any

import pytest

from tests.install.runs import run_logged as run


def apt(system: Any, verb: str) -> list[tuple[str, ...]]:
    return [c for c in system.calls if c[:2] == ("apt-get", verb)]


def test_both_agents_install_in_one_apt_transaction_after_one_update(node: Any) -> None:
    system, make_ctx, _ = node
    outcome, progress = run(make_ctx())
    installs = apt(system, "install")
    assert len(installs) == 1
    assert {"amazon-ssm-agent", "amazon-ecs-init"} <= set(installs[0])
    assert len(apt(system, "update")) == 1
    assert outcome.changed["ssm-agent-package"] == ["package amazon-ssm-agent",
                                                    "package amazon-ecs-init"]
    # The ecs-init step still looked, and found its package installed.
    assert "step=ecs-init-package " in progress and "ecs-init-package" not in outcome.changed
    assert outcome.report["cloud_verified"] is True


def test_ecs_init_removed_alone_is_installed_alone_on_the_rerun(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())
    del system.packages["amazon-ecs-init"]
    system.calls.clear()
    outcome, _ = run(make_ctx(with_code=False))
    assert outcome.changed["ecs-init-package"] == ["package amazon-ecs-init"]
    assert "ssm-agent-package" not in outcome.changed
    assert [c for c in apt(system, "install") if "amazon-ssm-agent" in c] == []


def test_docker_after_the_agents_reuses_the_runs_index_refresh(node: Any) -> None:
    system, make_ctx, _ = node
    outcome, _ = run(make_ctx(docker_source="distro"))
    assert "docker-package" in outcome.changed
    assert len(apt(system, "update")) == 1
    assert any("docker.io" in c for c in apt(system, "install"))


def supervisor_states(system: Any, states: list[str]) -> None:
    """After its start, `systemctl show anywhere-agent` answers `states` in turn (then the last)."""
    real = system._systemctl

    def systemctl(argv: tuple[str, ...]) -> Any:
        result = real(argv)
        if argv[1] == "show" and argv[2] == "anywhere-agent" and \
                system.units.get("anywhere-agent") and system.units["anywhere-agent"].active:
            state = states.pop(0) if len(states) > 1 else states[0]
            active, _, sub = state.partition("/")  # "activating/auto-restart"
            out = result.stdout.replace("ActiveState=active", f"ActiveState={active}")
            return type(result)(argv, 0, out.replace("SubState=running", f"SubState={sub}")
                                if sub else out)
        return result

    system._systemctl = systemctl


def test_supervisor_start_is_queued_and_the_run_ends_once_it_is_up(node: Any) -> None:
    system, make_ctx, _ = node
    supervisor_states(system, ["activating", "activating", "active"])
    outcome, progress = run(make_ctx())
    assert ("systemctl", "enable", "--no-reload", "--now", "--no-block",
            "anywhere-agent") in system.calls
    # The agents' own starts still wait: the next steps read what they do.
    assert ("systemctl", "enable", "--no-reload", "--now", "ecs") in system.calls
    assert "step=supervisor-ready " in progress and "supervisor-ready" not in outcome.changed
    assert outcome.report["cloud_verified"] is True


def test_a_supervisor_that_fails_to_start_fails_the_run_with_the_fix(node: Any) -> None:
    from anywhere_agent.errors import HostIOError

    system, make_ctx, _ = node
    supervisor_states(system, ["activating", "failed"])
    with pytest.raises(HostIOError) as err:
        run(make_ctx())
    assert "anywhere-agent did not start: it is failed" in str(err.value)
    assert "journalctl -u anywhere-agent" in err.value.fix


def test_a_supervisor_in_systemds_restart_loop_fails_the_run_at_once_not_after_the_timeout(
        node: Any) -> None:
    from anywhere_agent.errors import HostIOError

    system, make_ctx, _ = node
    supervisor_states(system, ["activating/auto-restart"])
    with pytest.raises(HostIOError) as err:
        run(make_ctx())
    assert "anywhere-agent did not start: it exited and systemd is restarting it" in str(err.value)
    shows = [c for c in system.calls if c[:3] == ("systemctl", "show", "anywhere-agent")]
    assert len(shows) <= 3  # no waiting through the 120 s bound (a real run: ~50 s)


def test_a_removed_agent_within_the_hour_is_reinstalled_from_the_known_index(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())
    del system.packages["amazon-ssm-agent"]
    outcome, _ = run(make_ctx(with_code=False))
    assert outcome.changed["ssm-agent-package"] == ["package amazon-ssm-agent"]
    assert len(apt(system, "update")) == 1  # the first run's fetch is still current
    assert any("no package index refresh" in n and "amazon-ssm-agent 1.0" in n
               for n in outcome.notes), outcome.notes


def test_an_index_older_than_an_hour_is_fetched_again(node: Any) -> None:
    import json
    import time

    system, make_ctx, _ = node
    run(make_ctx())
    state = system.root / "var/lib/anywhere-agent/state.json"
    data = json.loads(state.read_text())
    data["package_index_at"] = time.time() - 7200
    state.write_text(json.dumps(data))
    del system.packages["amazon-ssm-agent"]
    outcome, _ = run(make_ctx(with_code=False))
    assert len(apt(system, "update")) == 2
    assert not any("no package index refresh" in n for n in outcome.notes)


def test_a_fresh_install_reloads_systemd_once(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())
    # Unit files and drop-ins come before the first service step; `enable` adds no reload.
    assert system.reloads == 1
    assert all("--no-reload" in c for c in system.calls if c[:2] == ("systemctl", "enable"))
