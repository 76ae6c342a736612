"""Pinned agent versions from each package source: the plan names the change, apply makes it,
a re-run is satisfied (scripted node on a temp root)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.config import Config
from anywhere_agent.errors import PackageError
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.host.platform import detect
from anywhere_agent.install.apply import plan
from anywhere_agent.install.sources import PackageSource, package_url
from tests.install.runs import run

DEBIAN = 'ID=debian\nVERSION_ID="12"\n'
RHEL = 'ID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.4"\n'


def step(planned: list[Any], name: str) -> Any:
    return next(p for p in planned if p.step.name == name)


def apt_installs(system: Any) -> list[tuple[str, ...]]:
    return [c for c in system.calls if c[:2] == ("apt-get", "install")]


def test_a_pinned_fresh_install_asks_apt_for_exactly_that_version(node: Any) -> None:
    system, make_ctx, _ = node
    ctx = make_ctx(ecs_agent_version="1.105.0", ssm_agent_version="3.3.1611.0")
    planned = plan(ctx)
    ecs = step(planned, "ecs-init-package").delta
    assert ecs.summary == ("install amazon-ecs-init 1.105.0 from the host's configured "
                           "repositories (amazon-ecs-init=1.105.0-1)")
    run(ctx)
    assert system.packages["amazon-ecs-init"] == "1.105.0-1"
    assert system.packages["amazon-ssm-agent"] == "3.3.1611.0-1"
    assert any("amazon-ssm-agent=3.3.1611.0-1" in c for c in apt_installs(system))
    assert all(p.delta is None for p in plan(make_ctx(with_code=False, ecs_agent_version="1.105.0",
                                                      ssm_agent_version="3.3.1611.0"))
               if p.step.name.endswith("-package"))


def test_a_host_on_another_version_is_moved_to_the_pin_and_the_ecs_agent_restarted(
        node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())  # unpinned: whatever the repository has
    system.packages["amazon-ecs-init"] = "1.105.1-1"
    restarts = system.units["ecs"].restarts
    ctx = make_ctx(with_code=False, ecs_agent_version="1.105.0")
    delta = step(plan(ctx), "ecs-init-package").delta
    assert delta.summary.startswith("downgrade amazon-ecs-init 1.105.1-1 -> 1.105.0: ")
    assert [str(a) for a in delta.services] == ["restart ecs"]
    assert step(plan(ctx), "ssm-agent-package").delta is None  # unpinned: any version will do
    outcome = run(ctx)
    assert outcome.changed["ecs-init-package"] == ["package amazon-ecs-init 1.105.0-1"]
    last = apt_installs(system)[-1]
    assert "--allow-downgrades" in last and last[-1] == "amazon-ecs-init=1.105.0-1"
    assert system.units["ecs"].restarts == restarts + 1
    # Forward again: an upgrade, and then nothing left to do.
    up = step(plan(make_ctx(with_code=False, ecs_agent_version="1.105.1")), "ecs-init-package")
    assert up.delta.summary.startswith("upgrade amazon-ecs-init 1.105.0-1 -> 1.105.1: ")
    run(make_ctx(with_code=False, ecs_agent_version="1.105.1"))
    assert step(plan(make_ctx(with_code=False, ecs_agent_version="1.105.1")),
                "ecs-init-package").delta is None


def test_a_version_the_source_does_not_have_fails_naming_the_key(node: Any) -> None:
    system, make_ctx, _ = node
    run(make_ctx())
    ctx = make_ctx(with_code=False, ecs_agent_version="1.105.0")
    real = system.__call__

    def apt_ignores_the_pin(argv: Any, **kw: Any) -> Any:
        if tuple(argv[:2]) == ("apt-get", "install"):
            return real(["apt-get", "install", "amazon-ecs-init"], **kw)  # leaves 1.0
        return real(argv, **kw)

    ctx.host._runner = apt_ignores_the_pin
    with pytest.raises(PackageError) as err:
        run(ctx)
    assert "not the pinned 1.105.0" in str(err.value)
    assert "ecs_agent_version" in err.value.fix


@pytest.mark.parametrize(("family", "ecs", "ssm"), [
    ("deb", "amazon-ecs-agent-us-east-1/amazon-ecs-init-1.105.0-1.amd64.deb",
     "amazon-ssm-us-east-1/3.3.1611.0/debian_amd64/amazon-ssm-agent.deb"),
    ("rpm", "amazon-ecs-agent-us-east-1/amazon-ecs-init-1.105.0-1.x86_64.rpm",
     "amazon-ssm-us-east-1/3.3.1611.0/linux_amd64/amazon-ssm-agent.rpm"),
])
def test_the_aws_source_downloads_awss_versioned_keys(family: str, ecs: str, ssm: str) -> None:
    platform = detect(DEBIAN if family == "deb" else RHEL, "x86_64")
    cfg = Config(region="us-east-1", ecs_agent_version="1.105.0", ssm_agent_version="3.3.1611.0")
    base = "https://s3.us-east-1.amazonaws.com/"
    assert package_url(cfg, platform, "amazon-ecs-init") == base + ecs
    assert package_url(cfg, platform, "amazon-ssm-agent") == base + ssm
    latest = Config(region="us-east-1")
    assert package_url(latest, platform, "amazon-ecs-init").endswith(
        "amazon-ecs-init-latest." + ("amd64.deb" if family == "deb" else "x86_64.rpm"))


def _bundle(root: Path, names: list[str]) -> None:
    agents = root / "bundle/agents"
    agents.mkdir(parents=True)
    lines = []
    for name in names:
        (agents / name).write_bytes(name.encode())
        lines.append(f"{hashlib.sha256(name.encode()).hexdigest()}  agents/{name}\n")
    (root / "bundle/manifest.sha256").write_text("".join(lines))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Any, **kw: Any) -> Any:
        from anywhere_agent.host.gateway import Result

        self.calls.append(list(argv))
        return Result(tuple(argv), 0, "")


@pytest.mark.parametrize(("pin", "chosen"), [
    ("", "amazon-ecs-init_1.105.1-1_amd64.deb"),
    ("1.105.0", "amazon-ecs-init_1.105.0-1_amd64.deb"),
])
def test_the_bundle_source_selects_the_pinned_version(tmp_path: Path, pin: str,
                                                      chosen: str) -> None:
    _bundle(tmp_path, ["amazon-ecs-init_1.105.0-1_amd64.deb",
                       "amazon-ecs-init_1.105.1-1_amd64.deb"])
    runner = Recorder()
    host = Host(tmp_path, runner=runner)
    platform = detect(DEBIAN, "x86_64")
    cfg = Config(region="us-east-1", package_source="bundle", bundle_dir="/bundle",
                 ecs_agent_version=pin)
    PackageSource(cfg, host, platform, PackageManager(host, "apt")).install(
        "amazon-ecs-init", downgrade=bool(pin))
    argv = runner.calls[-1]
    assert argv[-1] == str(tmp_path / "bundle/agents" / chosen)
    assert ("--allow-downgrades" in argv) is bool(pin)


def test_a_bundle_without_the_pinned_version_names_how_to_rebuild_it(tmp_path: Path) -> None:
    _bundle(tmp_path, ["amazon-ecs-init_1.105.1-1_amd64.deb"])
    host = Host(tmp_path, runner=Recorder())
    cfg = Config(region="us-east-1", package_source="bundle", bundle_dir="/bundle",
                 ecs_agent_version="1.104.0")
    source = PackageSource(cfg, host, detect(DEBIAN, "x86_64"), PackageManager(host, "apt"))
    with pytest.raises(PackageError) as err:
        source.install("amazon-ecs-init")
    assert "has no amazon-ecs-init 1.104.0 (it carries 1.105.1-1)" in str(err.value)
    assert "anywhere-agent bundle --ecs-agent-version 1.104.0" in err.value.fix


@pytest.mark.parametrize(("kind", "argv"), [
    ("dnf", ["dnf", "downgrade", "-y", "amazon-ecs-init-1.105.0"]),
    ("yum", ["yum", "downgrade", "-y", "amazon-ecs-init-1.105.0"]),
    ("zypper", ["zypper", "--non-interactive", "install", "--allow-unsigned-rpm", "--oldpackage",
                "amazon-ecs-init=1.105.0"]),
])
def test_the_repo_source_pins_and_downgrades_with_each_rpm_manager(tmp_path: Path, kind: str,
                                                                   argv: list[str]) -> None:
    runner = Recorder()
    host = Host(tmp_path, runner=runner)
    cfg = Config(region="us-east-1", package_source="repo", ecs_agent_version="1.105.0")
    PackageSource(cfg, host, detect(RHEL, "x86_64"), PackageManager(host, kind)).install(
        "amazon-ecs-init", downgrade=True)
    assert runner.calls[-1] == argv


def test_a_refused_activation_puts_the_agent_version_the_host_had_back(node: Any) -> None:
    from anywhere_agent.errors import ActivationError

    system, make_ctx, _ = node
    system.packages["amazon-ssm-agent"] = "3.3.1802.0-1"  # installed, never registered
    system.register_error = "ActivationExpired: Activation has expired"
    with pytest.raises(ActivationError):
        run(make_ctx(ssm_agent_version="3.3.1611.0"))
    assert any(c[-1] == "amazon-ssm-agent=3.3.1611.0-1" for c in apt_installs(system))
    assert system.packages["amazon-ssm-agent"] == "3.3.1802.0-1"  # back, not removed
    assert apt_installs(system)[-1][-1] == "amazon-ssm-agent=3.3.1802.0-1"
