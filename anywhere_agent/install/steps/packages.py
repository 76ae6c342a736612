"""Packages the install puts on the host: the agents and Docker."""

from __future__ import annotations

from collections.abc import Callable

from anywhere_agent.errors import PreflightError
from anywhere_agent.host import agent_files
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.steps.base import Delta, Step, Undo, _docker_managed, _is_deb, _is_rpm


class PackageStep(Step):
    def __init__(self, name: str, package: str,
                 when: Callable[[InstallContext], bool] = lambda ctx: True) -> None:
        self.name, self.package, self._when = name, package, when
        self.title = f"install {package}"

    def applies(self, ctx: InstallContext) -> bool:
        return self._when(ctx)

    def check(self, ctx: InstallContext) -> Delta | None:
        if ctx.source.pm.installed_version(self.package):
            return None
        return Delta(f"install {ctx.source.describe(self.package)}", packages=[self.package])

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        ctx.source.install(self.package)
        # Uninstall removes only packages we installed: remember them.
        ctx.journal.record_installed(self.package)
        return [f"package {self.package}"]

    def undo(self, ctx: InstallContext, delta: Delta) -> Undo | None:
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
