"""Plan (what each step would do) and apply (a short loop that journals each finished step)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from anywhere_agent.aws.central import deregister_command
from anywhere_agent.errors import ActivationError, AgentError, CloudError
from anywhere_agent.host import agent_files
from anywhere_agent.host.agent_files import read_registration
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.journal import install_lock
from anywhere_agent.install.steps import (
    CredentialsStep,
    Delta,
    FileStep,
    PackageStep,
    RegistrationStep,
    Step,
    all_steps,
    deregister_own_registration,
)

LOG = logging.getLogger(__name__)


@dataclass
class PlannedStep:
    step: Step
    delta: Delta | None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"step": self.step.name, "satisfied": self.delta is None}
        if self.delta is not None:
            d.update(self.delta.to_dict())
        return d


def plan(ctx: InstallContext, steps: list[Step] | None = None) -> list[PlannedStep]:
    """What apply would do from the host's current state. Reads only; changes nothing."""
    return [PlannedStep(s, s.check(ctx)) for s in (steps or all_steps()) if s.applies(ctx)]


def render_plan(planned: list[PlannedStep]) -> str:
    """Human-readable plan: one line per step, then each file diff, package, service, call."""
    out: list[str] = []
    for p in planned:
        if p.delta is None:
            out.append(f"  ok      {p.step.name}")
            continue
        out.append(f"  change  {p.step.name}: {p.delta.summary}")
        for f in p.delta.files:
            out.extend("          " + line for line in f.diff().rstrip("\n").splitlines())
        out.extend(f"          package: {pkg}" for pkg in p.delta.packages)
        out.extend(f"          service: {svc}" for svc in p.delta.services)
        out.extend(f"          cloud:   {call}" for call in p.delta.cloud)
    changes = sum(1 for p in planned if p.delta is not None)
    out.append(f"{changes} of {len(planned)} steps would act")
    return "\n".join(out)


class Progress:
    """A line per step: rewritten in place on a TTY, one plain log line otherwise."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty

    def start(self, index: int, total: int, step: Step) -> None:
        if self.tty:
            self.stream.write(f"\r\033[K[{index}/{total}] {step.title or step.name} ...")
            self.stream.flush()

    def done(self, index: int, total: int, step: Step, result: str, seconds: float,
             changed: list[str]) -> None:
        detail = f" ({'; '.join(changed)})" if changed else ""
        if self.tty:
            self.stream.write(f"\r\033[K[{index}/{total}] {step.name}: {result}{detail}\n")
        else:
            self.stream.write(f"step={step.name} index={index}/{total} result={result} "
                              f"seconds={seconds:.2f}{detail}\n")
        self.stream.flush()


@dataclass
class Outcome:
    changed: dict[str, list[str]] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": bool(self.changed),
            "changes": self.changed,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
            **self.report,
        }


class _Undo:
    """What this run changed before registration, so a refused activation leaves no trace."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, Callable[[], None]]] = []
        self.deregistered = ""  # the managed instance this run registered and removed again

    def record(self, ctx: InstallContext, step: Step, delta: Delta) -> None:
        if isinstance(step, FileStep):
            change = delta.files[0]
            mode = ctx.host.mode(change.path) or 0o644
            # Directories the write will create, deepest first, so undo removes them too.
            new_dirs = []
            parent = ctx.host.path(change.path).parent
            while not parent.exists():
                new_dirs.append(parent)
                parent = parent.parent

            def restore(path: str = change.path, old: str | None = change.old) -> None:
                if old is None:
                    ctx.host.remove(path)
                    for d in new_dirs:
                        try:
                            d.rmdir()
                        except OSError:
                            break
                else:
                    ctx.host.write_atomic(path, old, mode)

            self.actions.append((f"restore {change.path}", restore))
        elif isinstance(step, PackageStep):

            def remove(pkg: str = step.package) -> None:
                ctx.source.pm.remove([pkg])
                left = set(ctx.journal.data.get("installed_packages", [])) - {pkg}
                ctx.journal.data["installed_packages"] = sorted(left)
                ctx.journal.save()

            self.actions.append((f"remove package {step.package}", remove))
        elif isinstance(step, RegistrationStep):

            def clear() -> None:
                # Remove this run's managed instance from SSM first: the files below hold
                # the only credentials that may do it.
                mine = read_registration(ctx.host).get("ManagedInstanceID", "")
                if mine and deregister_own_registration(ctx, mine):
                    self.deregistered = mine
                svc = ctx.host.services
                if svc.state(agent_files.SSM_UNIT).active:
                    svc.stop(agent_files.SSM_UNIT)
                ctx.host.run([agent_files.SSM_BINARY, "-register", "-clear"], timeout=60)
                for path in (agent_files.SSM_REGISTRATION, agent_files.SSM_REGISTRATION_KEY,
                             agent_files.HOST_CREDENTIALS):
                    ctx.host.remove(path)
                ctx.journal.data["identity"] = {}
                ctx.journal.save()

            self.actions.append(("clear the new SSM registration", clear))

    def run(self, ctx: InstallContext) -> list[str]:
        failures = []
        for what, action in reversed(self.actions):
            try:
                action()
            except AgentError as err:
                failures.append(f"{what}: {err}")
        self.actions.clear()
        return failures


# Errors a user causes with a bad activation/cluster/region: undo this run's changes.
_UNDO_ON = (ActivationError, CloudError)


def apply(ctx: InstallContext, progress: Progress | None = None,
          steps: list[Step] | None = None) -> Outcome:
    """Converge the host; each step re-checks right before acting (the plan is a forecast)."""
    progress = progress or Progress()
    outcome = Outcome()
    started = time.monotonic()
    chosen = [s for s in (steps or all_steps()) if s.applies(ctx)]
    with install_lock(ctx.host):
        for step in chosen:
            step.guard(ctx)  # what no step can fix stops the run before anything changed
        journal = ctx.journal
        journal.begin_run("install")
        undo = _Undo()
        undoing = True  # until the cluster check passed: a bad activation/cluster is undone
        registered_now = ""
        try:
            for index, step in enumerate(chosen, 1):
                progress.start(index, len(chosen), step)
                t0 = time.monotonic()
                if isinstance(step, CredentialsStep):
                    undoing = False  # past the cluster check nothing is undone
                delta = step.check(ctx)
                if delta is None:
                    if isinstance(step, CredentialsStep):
                        undo.actions.clear()
                    progress.done(index, len(chosen), step, "ok", time.monotonic() - t0, [])
                    continue
                if isinstance(step, RegistrationStep):
                    before = read_registration(ctx.host).get("ManagedInstanceID", "")
                if undoing:
                    undo.record(ctx, step, delta)  # before acting: a failed apply is undone too
                changed = step.apply(ctx, delta)
                if isinstance(step, RegistrationStep):
                    registered_now = read_registration(ctx.host).get("ManagedInstanceID", "")
                    if before and before != registered_now:
                        undo.actions.clear()  # an old identity is never restored by undo
                if isinstance(step, CredentialsStep):
                    undo.actions.clear()
                journal.record_step(step.name, changed)
                if changed:
                    outcome.changed[step.name] = changed
                progress.done(index, len(chosen), step, "changed" if changed else "ok",
                              time.monotonic() - t0, changed)
        except _UNDO_ON as err:
            failures = undo.run(ctx)
            left = registered_now if registered_now != undo.deregistered else ""
            detail = str(err)
            if undo.deregistered:
                detail += f" (managed instance {undo.deregistered} deregistered again)"
            if left:
                detail += (f" (managed instance {left} cleared locally; remove it from SSM "
                           f"with `{deregister_command(ctx.cfg.region, left)}`)")
            if failures:
                detail += "; undo incomplete: " + "; ".join(failures)
            journal.end_run("failed", detail)
            suffix = (f" [{left} left in SSM: run `{deregister_command(ctx.cfg.region, left)}`"
                      " with the registrar's rights]" if left else
                      f" [{undo.deregistered}, registered by this run, deregistered again]"
                      if undo.deregistered else "")
            raise type(err)(err.message + suffix, err.fix) from None
        except AgentError as err:
            journal.end_run("failed", str(err))
            raise
        except BaseException:
            journal.end_run("failed", "interrupted")
            raise
        journal.end_run("ok")
    ident = ctx.journal.identity
    outcome.report = {"managed_instance_id": ident.get("managed_instance_id"),
                      "cluster": ctx.cfg.cluster, "region": ctx.cfg.region, **ctx.report}
    outcome.notes = list(ctx.notes)
    outcome.seconds = time.monotonic() - started
    return outcome
