"""Packages the install puts on the host: the agents and Docker."""

from __future__ import annotations

from collections.abc import Callable

from anywhere_agent.errors import PackageError, PreflightError
from anywhere_agent.host import agent_files, pins
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.steps.base import (
    Delta,
    Step,
    Undo,
    UnitAction,
    Verb,
    _docker_managed,
    _is_deb,
    _is_rpm,
)

# A changed package whose maintainer scripts leave the running agent alone: the real
# amazon-ecs-init deb only reloads systemd, so the old agent would run on until restarted. The
# SSM agent's preinst stops it and its postinst starts it again.
_RESTART_ON_CHANGE = {agent_files.ECS_PACKAGE: (agent_files.ECS_UNIT,)}


class PackageStep(Step):
    """The package installed, at its pinned version when agent.toml pins one
    (ecs_agent_version, ssm_agent_version): a host on another version is moved to it."""

    def __init__(self, name: str, package: str,
                 when: Callable[[InstallContext], bool] = lambda ctx: True) -> None:
        self.name, self.package, self._when = name, package, when
        self.title = f"install {package}"

    def applies(self, ctx: InstallContext) -> bool:
        return self._when(ctx)

    def check(self, ctx: InstallContext) -> Delta | None:
        installed = ctx.source.pm.installed_version(self.package)
        pin = pins.pinned(ctx.cfg, self.package)
        if pins.satisfies(installed, pin):
            return None
        if installed is None:
            return Delta(f"install {ctx.source.describe(self.package)}",
                         packages=[f"{self.package} {pin}" if pin else self.package])
        way = "downgrade" if pins.is_newer(installed, pin) else "upgrade"
        restarts = _RESTART_ON_CHANGE.get(self.package, ())
        return Delta(f"{way} {self.package} {installed} -> {pin}: "
                     f"{ctx.source.describe(self.package)}",
                     packages=[f"{self.package} {installed} -> {pin}"],
                     services=[UnitAction(Verb.RESTART, u) for u in restarts],
                     data={"installed": installed, "downgrade": way == "downgrade"})

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        if delta.data.get("installed"):
            # Recorded first: a run killed after the package changed still restarts the agent.
            for unit in _RESTART_ON_CHANGE.get(self.package, ()):
                ctx.journal.add_pending_restart(unit)
        ctx.source.install(self.package, downgrade=bool(delta.data.get("downgrade")))
        pin = pins.pinned(ctx.cfg, self.package)
        now = ctx.source.pm.installed_version(self.package) if pin else None
        if pin and not pins.satisfies(now, pin):
            raise PackageError(f"{self.package} is {now or 'not installed'} after installing, "
                               f"not the pinned {pin}",
                               f"check that the {ctx.cfg.package_source} source offers "
                               f"{self.package} {pin}, or change {pins.PIN_KEYS[self.package]}")
        # Uninstall removes only packages we installed: remember them.
        ctx.journal.record_installed(self.package)
        return [f"package {self.package} {now}" if pin else f"package {self.package}"]

    def undo(self, ctx: InstallContext, delta: Delta) -> Undo | None:
        previous = str(delta.data.get("installed") or "")
        if previous:
            # This run moved an installed package to its pin: put the version back, never
            # remove a package the host had before.
            def restore() -> None:
                ctx.source.pinned_to(self.package, previous).install(
                    self.package, downgrade=not delta.data.get("downgrade"))

            return Undo(f"put {self.package} {previous} back", restore)

        def remove() -> None:
            ctx.source.pm.remove([self.package])
            ctx.journal.forget_installed(self.package)

        return Undo(f"remove package {self.package}", remove)


class DockerStep(Step):
    """Docker from the chosen source; satisfied by any engine that brings docker.service.

    On EL8/9 the distribution's `docker` is podman-docker: a `docker` command with no daemon
    and no docker.service, which the ECS agent cannot use. That is detected (installed, or
    what dnf would install) and stops the install with the fix instead of installing it.
    """

    name, title = "docker-package", "install Docker"

    def _package(self, ctx: InstallContext) -> str:
        if ctx.cfg.docker_source == "docker":
            return "docker-ce"
        return {"deb": "docker.io", "suse": "docker"}.get(ctx.platform.family,
                                                          "moby-engine" if ctx.platform.distro
                                                          == "fedora" else "docker")

    def applies(self, ctx: InstallContext) -> bool:
        return _docker_managed(ctx)

    def _engine_present(self, ctx: InstallContext) -> bool:
        if ctx.host.services.state(agent_files.DOCKER_UNIT).exists:
            return True  # an engine is there (ours from an earlier run, or the operator's)
        return any(ctx.source.pm.installed_version(candidate)
                   for candidate in ("docker-ce", "docker.io", "moby-engine"))

    def guard(self, ctx: InstallContext) -> None:
        if self._engine_present(ctx):
            return
        pm = ctx.source.pm
        daemonless = _daemonless_docker(ctx, pm.providers("docker"), available=False)
        if daemonless is None and _is_rpm(ctx) and ctx.cfg.docker_source == "distro":
            daemonless = _daemonless_docker(ctx, pm.providers(self._package(ctx),
                                                              available=True), available=True)
        if daemonless is not None:
            where = ctx.platform.pretty_name or ctx.platform.distro
            raise PreflightError(
                f"`docker` on {where} is {daemonless}, which has no docker.service for the "
                "ECS agent",
                "set docker_source = \"docker\" (Docker's own repository) in agent.toml, or "
                "install a Docker engine (docker-ce) before running install")

    def check(self, ctx: InstallContext) -> Delta | None:
        if self._engine_present(ctx):
            return None
        self.guard(ctx)
        if ctx.source.pm.installed_version(self._package(ctx)):
            return None
        return Delta(f"install {self._package(ctx)} ({ctx.cfg.docker_source} source)",
                     packages=[self._package(ctx)])

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        if ctx.cfg.docker_source == "docker" and _is_deb(ctx):
            raise PreflightError("docker_source = docker needs Docker's apt repository configured",
                                 "add download.docker.com to the host's sources, or use distro")
        ctx.source.pm.refresh()
        ctx.source.pm.install([self._package(ctx)])
        ctx.journal.record_installed(self._package(ctx))  # Docker too
        return [f"package {self._package(ctx)}"]


def _daemonless_docker(ctx: InstallContext, providers: list[str], *, available: bool) -> str | None:
    """The first provider of `docker` that ships no docker.service (podman-docker), if any."""
    for name in providers:
        files = ctx.source.pm.files(name, available=available)
        if not any(f.endswith("/docker.service") for f in files):
            return name
    return None
