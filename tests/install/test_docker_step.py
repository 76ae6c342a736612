"""DockerStep on the scripted node: EL8/9's daemonless `docker` (podman-docker) stops the install
with the fix before anything changes; an engine from any source satisfies it; re-runs act once."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from anywhere_agent.errors import ExitCode, PreflightError
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.host.platform import detect
from anywhere_agent.install.apply import Progress, apply
from anywhere_agent.install.journal import Journal
from anywhere_agent.install.sources import PackageSource
from anywhere_agent.install.steps import DockerStep

ROCKY9 = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n' \
    'PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n'
PODMAN_DOCKER = (["docker"], ["/usr/bin/docker", "/usr/share/man/man1/docker.1.gz"])
DOCKER_CE = (["docker-ce", "docker-engine"], ["/usr/bin/dockerd",
                                              "/usr/lib/systemd/system/docker.service"])


@dataclass
class RpmNode:
    """rpm and dnf in front of the scripted node: packages with what they provide and ship."""

    inner: Any
    repo: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    installed: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)

    def __call__(self, argv: Sequence[str], *, input: bytes | None = None,
                 env: Mapping[str, str] | None = None, timeout: float | None = None) -> Result:
        argv = tuple(argv)
        if argv[0] == "rpm":
            self.inner.calls.append(argv)
            return self._rpm(argv)
        if argv[0] == "dnf":
            self.inner.calls.append(argv)
            return self._dnf(argv)
        return self.inner(argv, input=input, env=env, timeout=timeout)

    @staticmethod
    def _providing(db: dict[str, tuple[list[str], list[str]]], cap: str) -> list[str]:
        return [name for name, (provides, _) in db.items() if cap == name or cap in provides]

    def _rpm(self, argv: tuple[str, ...]) -> Result:
        if "--whatprovides" in argv:
            found = self._providing(self.installed, argv[argv.index("--whatprovides") + 1])
            return Result(argv, 0 if found else 1, "".join(f"{n}\n" for n in found))
        name = argv[-1]
        if name not in self.installed:
            return Result(argv, 1, f"package {name} is not installed\n")
        if "-ql" in argv:
            return Result(argv, 0, "\n".join(self.installed[name][1]) + "\n")
        return Result(argv, 0, "1.0-1")

    def _dnf(self, argv: tuple[str, ...]) -> Result:
        if argv[1] == "repoquery":
            if "--whatprovides" in argv:
                found = self._providing(self.repo, argv[argv.index("--whatprovides") + 1])
                return Result(argv, 0, "\n".join(found) + ("\n" if found else ""))
            name = argv[-1]
            return Result(argv, 0, "\n".join(self.repo.get(name, ([], []))[1]) + "\n")
        if argv[1] == "install":
            for cap in (a for a in argv[2:] if not a.startswith("-")):
                name = (self._providing(self.repo, cap) or [cap])[0]
                self.installed[name] = self.repo.get(name, ([], []))
                if any(f.endswith("/docker.service") for f in self.installed[name][1]):
                    self.inner.units.setdefault("docker", _scripted_unit(self.inner)())
            return Result(argv, 0)
        return Result(argv, 1, "", "unsupported dnf call")


def el9_ctx(node: Any, **flags: Any) -> tuple[Any, RpmNode]:
    system, make_ctx, _ = node
    rpm = RpmNode(system)
    ctx = make_ctx(**flags)
    ctx.host = Host(system.root, runner=rpm)
    ctx.platform = detect(ROCKY9, "x86_64")
    ctx.source = PackageSource(ctx.cfg, ctx.host, ctx.platform, PackageManager(ctx.host, "dnf"))
    ctx.journal = Journal(ctx.host)
    return ctx, rpm


def installs(system: Any) -> list[tuple[str, ...]]:
    return [c for c in system.calls if c[:2] in (("dnf", "install"), ("apt-get", "install"))]


def test_el9_distro_docker_resolving_to_podman_docker_stops_before_anything_changes(
        node: Any) -> None:
    system = node[0]
    ctx, rpm = el9_ctx(node, docker_source="distro")
    rpm.repo["podman-docker"] = PODMAN_DOCKER
    files_before = sorted(p for p in system.root.rglob("*"))
    with pytest.raises(PreflightError) as err:
        apply(ctx, Progress(io.StringIO(), tty=False))  # type: ignore[arg-type]
    assert err.value.exit_code == ExitCode.PREFLIGHT
    assert "podman-docker" in err.value.message and "no docker.service" in err.value.message
    assert 'docker_source = "docker"' in err.value.fix and "before running install" in err.value.fix
    assert installs(system) == [] and system.registered == set()
    assert sorted(p for p in system.root.rglob("*") if "anywhere-agent" not in str(p)) == \
        [p for p in files_before if "anywhere-agent" not in str(p)]


def test_installed_podman_docker_is_named_on_a_rerun_too(node: Any) -> None:
    ctx, rpm = el9_ctx(node, docker_source="distro")
    rpm.installed["podman-docker"] = PODMAN_DOCKER
    with pytest.raises(PreflightError, match="podman-docker"):
        DockerStep().check(ctx)


def test_an_engine_installed_beforehand_satisfies_the_step_without_a_package_call(
        node: Any) -> None:
    system = node[0]
    ctx, rpm = el9_ctx(node, docker_source="distro")
    rpm.repo["podman-docker"] = PODMAN_DOCKER  # would be wrong, but is never asked for
    rpm.installed["docker-ce"] = DOCKER_CE
    system.units["docker"] = _scripted_unit(system)()
    assert DockerStep().check(ctx) is None
    assert installs(system) == []


def test_docker_ce_from_dockers_repository_installs_once_then_the_rerun_is_a_no_op(
        node: Any) -> None:
    system = node[0]
    ctx, rpm = el9_ctx(node, docker_source="docker")
    rpm.repo["podman-docker"] = PODMAN_DOCKER
    rpm.repo["docker-ce"] = DOCKER_CE
    step = DockerStep()
    delta = step.check(ctx)
    assert delta is not None and delta.packages == ["docker-ce"]
    step.apply(ctx, delta)
    assert step.check(ctx) is None
    assert [c[-1] for c in installs(system)] == ["docker-ce"]
    assert ctx.journal.data["installed_packages"] == ["docker-ce"]


def test_debian_docker_io_installs_once_then_the_rerun_is_a_no_op(node: Any) -> None:
    system, make_ctx, _ = node
    ctx = make_ctx(docker_source="distro")
    step = DockerStep()
    delta = step.check(ctx)
    assert delta is not None and delta.packages == ["docker.io"]
    step.apply(ctx, delta)
    assert step.check(ctx) is None
    assert [c[-1] for c in installs(system)] == ["docker.io"]


def _scripted_unit(system: Any) -> Any:
    """The scripted node's unit record (tests/conftest.py), found through the system object."""
    from importlib import import_module

    return import_module(type(system).__module__).Unit
