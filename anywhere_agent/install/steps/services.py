"""Units kept enabled and running, and the move to another cluster."""

from __future__ import annotations

from collections.abc import Callable

from anywhere_agent.host import agent_files
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.steps.base import DAEMON_RELOAD, Delta, Step, UnitAction, Verb


class ServiceStep(Step):
    """Unit enabled and active; restarted only when a file it reads changed (pending)."""

    def __init__(self, name: str, unit: str,
                 when: Callable[[InstallContext], bool] = lambda ctx: True) -> None:
        self.name, self.unit, self._when = name, unit, when
        self.title = f"run {unit}"

    def applies(self, ctx: InstallContext) -> bool:
        return self._when(ctx)

    def check(self, ctx: InstallContext) -> Delta | None:
        actions: list[UnitAction] = []
        pending = ctx.journal.pending_restarts()
        if DAEMON_RELOAD.verb.value in pending:
            actions.append(DAEMON_RELOAD)
        state = ctx.host.services.state(self.unit)
        if not state.enabled:
            actions.append(UnitAction(Verb.ENABLE, self.unit))
        if not state.active:
            actions.append(UnitAction(Verb.START, self.unit))
        elif self.unit in pending:
            actions.append(UnitAction(Verb.RESTART, self.unit))
        if not actions:
            return None
        return Delta(", ".join(map(str, actions)), services=actions)

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        svc = ctx.host.services
        for action in delta.services:
            if action.verb is Verb.DAEMON_RELOAD:
                svc.daemon_reload()
                ctx.journal.clear_pending_restart(DAEMON_RELOAD.verb.value)
            elif action.verb is Verb.ENABLE:
                svc.enable(self.unit)
            elif action.verb is Verb.START:
                svc.reset_failed(self.unit)
                svc.start(self.unit)
            elif action.verb is Verb.RESTART:
                svc.restart(self.unit)
        ctx.journal.clear_pending_restart(self.unit)
        return [str(a) for a in delta.services if a.verb is not Verb.DAEMON_RELOAD]



class ClusterMoveStep(Step):
    """Moving to another cluster needs the agent's old state removed (AWS's procedure)."""

    name, title = "ecs-cluster-move", "move to the configured cluster"

    def check(self, ctx: InstallContext) -> Delta | None:
        old = agent_files.ecs_config_cluster(ctx.host)
        if old and old != ctx.cfg.cluster and ctx.host.exists(agent_files.ECS_AGENT_DB):
            return Delta(f"move from cluster {old} to {ctx.cfg.cluster}: stop ecs, remove "
                         f"{agent_files.ECS_AGENT_DB}",
                         services=[UnitAction(Verb.STOP, agent_files.ECS_UNIT)])
        return None

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        ctx.journal.add_pending_restart(agent_files.ECS_UNIT)
        if ctx.host.services.state(agent_files.ECS_UNIT).active:
            ctx.host.services.stop(agent_files.ECS_UNIT)
        ctx.host.remove(agent_files.ECS_AGENT_DB)
        return [f"removed {agent_files.ECS_AGENT_DB}"]
