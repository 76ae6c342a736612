"""Packages the install puts on the host: the agents and Docker."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

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
    """`package` installed, at its pinned version when agent.toml pins one (ecs_agent_version,
    ssm_agent_version): a host on another version is moved to it.

    A fresh install brings `together` (a later step's packages) along in the same transaction:
    one apt/dnf run (index read, dependency solve, dpkg) instead of one per agent, each at its
    own pin. The later step then finds its package installed, and still checks it."""

    def __init__(self, name: str, package: str,
                 when: Callable[[InstallContext], bool] = lambda ctx: True,
                 together: tuple[str, ...] = ()) -> None:
        self.name, self.package, self._when, self.together = name, package, when, together
        self.title = f"install {package}"

    def applies(self, ctx: InstallContext) -> bool:
        return self._when(ctx)

    def check(self, ctx: InstallContext) -> Delta | None:
        pm = ctx.source.pm
        installed = pm.installed_version(self.package)
        pin = pins.pinned(ctx.cfg, self.package)
        if pins.satisfies(installed, pin):
            return None
        if installed is None:
            names = [self.package, *(p for p in self.together if not pm.installed_version(p))]
            shown = [f"{n} {pins.pinned(ctx.cfg, n)}" if pins.pinned(ctx.cfg, n) else n
                     for n in names]
            return Delta(f"install {ctx.source.describe_all(names)}", packages=shown,
                         data={"names": names})
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
            try:
                ctx.source.install(self.package, downgrade=bool(delta.data.get("downgrade")))
            finally:
                _stamp_index(ctx)
            names = [self.package]
        else:
            names = list(delta.data.get("names") or [self.package])
            if _index_known(ctx, names):
                ctx.source.index_is_current(names)
            try:
                # Fetches the index of only the sources offering `names`; when installing
                # then fails, fetches more (all of it) and tries again.
                ctx.source.install_all(names)
            finally:
                _stamp_index(ctx)
            # Uninstall removes only packages we installed: remember them.
            for name in names:
                ctx.journal.record_installed(name)
        changed = []
        for name in names:
            pin = pins.pinned(ctx.cfg, name)
            now = ctx.source.pm.installed_version(name) if pin else None
            if pin and not pins.satisfies(now, pin):
                raise PackageError(f"{name} is {now or 'not installed'} after installing, "
                                   f"not the pinned {pin}",
                                   f"check that the {ctx.cfg.package_source} source offers "
                                   f"{name} {pin}, or change {pins.PIN_KEYS[name]}")
            changed.append(f"package {name} {now}" if pin else f"package {name}")
        return changed

    def undo(self, ctx: InstallContext, delta: Delta) -> Undo | None:
        previous = str(delta.data.get("installed") or "")
        if previous:
            # This run moved an installed package to its pin: put the version back, never
            # remove a package the host had before.
            def restore() -> None:
                ctx.source.pinned_to(self.package, previous).install(
                    self.package, downgrade=not delta.data.get("downgrade"))

            return Undo(f"put {self.package} {previous} back", restore)
        names = list(delta.data.get("names") or [self.package])

        def remove() -> None:
            ctx.source.pm.remove(names)
            for name in names:
                ctx.journal.forget_installed(name)

        return Undo(f"remove package {', '.join(names)}", remove)


# How long an index fetched by install is trusted to name current versions. A run killed after
# `apt-get update`, or one that reinstalls a removed agent, then skips fetching it again.
INDEX_FRESH_SECONDS = 3600.0


def _index_known(ctx: InstallContext, names: Sequence[str]) -> bool:
    """Whether the repositories' index is recent (fetched by install within the hour) and
    already offers every one of `names`; says so in the run's notes when it is."""
    at = ctx.journal.package_index_at
    if ctx.cfg.package_source != "repo" or at is None:
        return False
    age = time.time() - at
    if not 0 <= age < INDEX_FRESH_SECONDS:
        return False
    found = ctx.source.pm.candidates(names)
    if not all(found.values()):
        return False
    ctx.note(f"no package index refresh: install fetched it {age / 60:.0f} min ago and it "
             f"offers {', '.join(f'{n} {v}' for n, v in found.items())}")
    return True


def _stamp_index(ctx: InstallContext) -> None:
    """Record when install fetched the index, and say which part of it was fetched."""
    for done in ctx.source.take_refreshes():
        ctx.note(done.note)
        ctx.report.setdefault("package_index", []).append(done.to_dict())
    if ctx.source.refreshed_now:
        ctx.journal.record_package_index(time.time())


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
        try:
            # Once per run for Docker's own sources; the agents' may have been fetched already.
            ctx.source.install_from_repos([self._package(ctx)])
        finally:
            _stamp_index(ctx)
        ctx.journal.record_installed(self._package(ctx))  # Docker too
        return [f"package {self._package(ctx)}"]


def _daemonless_docker(ctx: InstallContext, providers: list[str], *, available: bool) -> str | None:
    """The first provider of `docker` that ships no docker.service (podman-docker), if any."""
    for name in providers:
        files = ctx.source.pm.files(name, available=available)
        if not any(f.endswith("/docker.service") for f in files):
            return name
    return None
