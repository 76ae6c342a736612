"""What a pinned agent version asks of each source, and when an installed version meets it."""

from __future__ import annotations

from pathlib import Path

import pytest

from anywhere_agent.config import Config, load_config
from anywhere_agent.errors import ConfigError
from anywhere_agent.host import pins


@pytest.mark.parametrize(("installed", "pin", "ok"), [
    ("1.105.1-1", "1.105.1", True),
    ("1.105.1-2", "1.105.1", True),
    ("1:1.105.1-1", "1.105.1", True),
    ("1.105.1-1", "1.105.1-1", True),
    ("1.105.1-2", "1.105.1-1", False),
    ("1.105.0-1", "1.105.1", False),
    ("1.105.10-1", "1.105.1", False),
    ("3.3.1802.0-1", "", True),
    (None, "", False),
    (None, "1.105.1", False),
])
def test_an_installed_version_meets_a_pin_only_when_its_version_is_the_pinned_one(
        installed: str | None, pin: str, ok: bool) -> None:
    assert pins.satisfies(installed, pin) is ok


def test_awss_s3_keys_take_ecs_init_with_its_revision_and_the_ssm_agent_without() -> None:
    assert pins.s3_version(pins.ECS_PACKAGE, "1.105.1") == "1.105.1-1"
    assert pins.s3_version(pins.ECS_PACKAGE, "1.105.1-2") == "1.105.1-2"
    assert pins.s3_version(pins.SSM_PACKAGE, "3.3.1802.0") == "3.3.1802.0"
    assert pins.s3_version(pins.SSM_PACKAGE, "3.3.1802.0-1") == "3.3.1802.0"
    assert pins.s3_version(pins.ECS_PACKAGE, "") == "latest"


@pytest.mark.parametrize(("kind", "spec"), [
    ("apt", "amazon-ecs-init=1.105.0-1"),
    ("dnf", "amazon-ecs-init-1.105.0"),
    ("yum", "amazon-ecs-init-1.105.0"),
    ("zypper", "amazon-ecs-init=1.105.0"),
])
def test_each_package_manager_is_asked_for_the_pinned_version_in_its_syntax(kind: str,
                                                                             spec: str) -> None:
    assert pins.manager_spec(kind, pins.ECS_PACKAGE, "1.105.0") == spec
    assert pins.manager_spec(kind, pins.ECS_PACKAGE, "") == pins.ECS_PACKAGE


def test_a_pin_below_the_installed_version_is_a_downgrade() -> None:
    assert pins.is_newer("1.105.1-1", "1.105.0")
    assert pins.is_newer("1.105.10-1", "1.105.9")
    assert not pins.is_newer("1.105.0-1", "1.105.1")
    assert not pins.is_newer("1.105.1-1", "1.105.1")
    assert pins.is_newer("1.105.1-2", "1.105.1-1")


def test_status_names_a_host_off_its_pin_and_the_fix() -> None:
    off = pins.PinState(pins.ECS_PACKAGE, "1.105.0-1", "1.105.1")
    assert off.to_dict() == {"package": "amazon-ecs-init", "installed": "1.105.0-1",
                             "pinned": "1.105.1", "running": None, "state": "differs",
                             "matches": False}
    assert "differs; run install" in off.describe()
    on = pins.PinState(pins.SSM_PACKAGE, "3.3.1802.0-1", "3.3.1802.0")
    assert on.to_dict()["state"] == "as_pinned" and on.to_dict()["matches"]
    free = pins.PinState(pins.SSM_PACKAGE, "3.3.1802.0-1", "")
    assert free.to_dict()["pinned"] is None and "latest" in free.describe()


def test_the_version_keys_come_from_agent_toml_environment_and_flags(tmp_path: Path) -> None:
    conf = tmp_path / "etc/anywhere-agent/agent.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('ecs_agent_version = "1.105.0"\nssm_agent_version = "3.3.1611.0"\n')
    cfg = load_config(tmp_path, {}, {})
    assert (cfg.ecs_agent_version, cfg.ssm_agent_version) == ("1.105.0", "3.3.1611.0")
    assert pins.pinned(cfg, pins.ECS_PACKAGE) == "1.105.0"
    env = load_config(tmp_path, {"ANYWHERE_AGENT_ECS_AGENT_VERSION": "1.105.1"}, {})
    assert env.ecs_agent_version == "1.105.1"
    flag = load_config(tmp_path, {}, {"ecs_agent_version": ""})
    assert flag.ecs_agent_version == ""  # an empty flag unpins: the latest again
    assert Config().ecs_agent_version == Config().ssm_agent_version == ""


def test_a_version_that_is_no_package_version_is_a_config_error_naming_an_example(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {}, {"ecs_agent_version": "latest please"})
    assert "ecs_agent_version" in str(err.value) and "1.105.1" in err.value.fix


def test_a_package_at_its_pin_whose_agent_still_runs_the_old_version_does_not_match() -> None:
    running = pins.ecs_agent_running("Amazon ECS Agent - v1.105.0 (*a8b3e7d3)")
    assert running == "1.105.0"
    stale = pins.PinState(pins.ECS_PACKAGE, "1.105.1-1", "1.105.1", running)
    assert stale.to_dict()["state"] == "not_restarted" and stale.to_dict()["matches"] is False
    assert "still runs 1.105.0" in stale.describe()
    fresh = pins.PinState(pins.ECS_PACKAGE, "1.105.1-1", "1.105.1",
                          pins.ecs_agent_running("Amazon ECS Agent - v1.105.1 (lab double)"))
    assert fresh.to_dict()["matches"] is True
    assert pins.ecs_agent_running(None) is None
