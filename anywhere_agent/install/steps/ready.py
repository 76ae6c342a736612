"""Units whose start install queued without waiting: the run ends only once each is up."""

from __future__ import annotations

from anywhere_agent.errors import HostIOError
from anywhere_agent.host.gateway import UnitState
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.poll import poll
from anywhere_agent.install.steps.base import Delta, Step, UnitAction, Verb

# systemd's own bound on a start (the supervisor unit's TimeoutStartSec).
READY_TIMEOUT_SECONDS = 120.0


class UnitReadyStep(Step):
    """`unit` active, after a ServiceStep queued its start (wait=False) earlier in the run.

    The wait overlaps the steps between (proving the join), so the run ends about when the
    host is joined instead of a supervisor start later; a unit that failed to start still
    fails the run, as a blocking `systemctl start` would have.
    """

    def __init__(self, name: str, unit: str) -> None:
        self.name, self.unit = name, unit
        self.title = f"{unit} is up"

    def check(self, ctx: InstallContext) -> Delta | None:
        state = ctx.host.services.state(self.unit)
        if state.active_state == "active":
            return None
        return Delta(f"wait for {self.unit} to start ({state.active_state})",
                     services=[UnitAction(Verb.WAIT, self.unit)])

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        def settled() -> UnitState | None:
            state = ctx.host.services.state(self.unit)
            # "activating (auto-restart)" is systemd between restarts of a unit that exited:
            # it is failing, not starting, and waiting for StartLimitBurst takes ~50 s.
            starting = (state.active_state in ("activating", "reloading")
                        and state.sub_state != "auto-restart")
            return None if starting else state

        state = poll(settled, seconds=READY_TIMEOUT_SECONDS, clock=ctx.clock, sleep=ctx.sleep,
                     first=0.05, cap=1.0) or ctx.host.services.state(self.unit)
        if state.active_state != "active":
            how = ("it exited and systemd is restarting it" if state.sub_state == "auto-restart"
                   else f"it is {state.active_state} ({state.sub_state})")
            raise HostIOError(f"{self.unit} did not start: {how}",
                              f"see `journalctl -u {self.unit}` for why, then re-run install")
        return []
