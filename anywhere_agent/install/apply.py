"""Plan (what each step would do) and apply (a short loop that journals each finished step)."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from anywhere_agent.aws.central import deregister_command
from anywhere_agent.errors import ActivationError, AgentError, CloudError
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.journal import install_lock
from anywhere_agent.install.steps import Delta, Step, Undo, all_steps

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


class _UndoLog:
    """What this run changed before the cluster check, so a refused activation or cluster
    leaves no trace; each step says how its own change is taken back."""

    def __init__(self) -> None:
        self.entries: list[Undo] = []
        self.open = True

    def add(self, entry: Undo | None) -> None:
        if self.open and entry is not None:
            self.entries.append(entry)

    def forget(self, *, close: bool = False) -> None:
        self.entries.clear()
        self.open = self.open and not close

    def run(self) -> list[str]:
        failures = []
        for entry in reversed(self.entries):
            try:
                entry.action()
            except AgentError as err:
                failures.append(f"{entry.what}: {err}")
        self.entries.clear()
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
    for step in chosen:
        step.guard(ctx)  # what no step can fix stops the run before anything changed, lock too
    with install_lock(ctx.host):
        journal = ctx.journal
        journal.begin_run("install")
        undo = _UndoLog()
        try:
            for index, step in enumerate(chosen, 1):
                progress.start(index, len(chosen), step)
                t0 = time.monotonic()
                delta = step.check(ctx)
                ctx.report.update(step.findings())
                changed: list[str] = []
                if delta is not None:
                    undo.add(step.undo(ctx, delta))  # before acting: a failed apply is undone
                    changed = step.apply(ctx, delta)
                    journal.record_step(step.name, changed)
                    if step.keeps_earlier(ctx, delta):
                        undo.forget()
                if step.ends_undo:
                    undo.forget(close=True)
                if changed:
                    outcome.changed[step.name] = changed
                progress.done(index, len(chosen), step, "changed" if changed else "ok",
                              time.monotonic() - t0, changed)
        except _UNDO_ON as err:
            failures = undo.run()
            again = ctx.deregistered_again
            left = ctx.registered_now if ctx.registered_now != again else ""
            detail = str(err)
            if again:
                detail += f" (managed instance {again} deregistered again)"
            if left:
                detail += (f" (managed instance {left} cleared locally; remove it from SSM "
                           f"with `{deregister_command(ctx.cfg.region, left)}`)")
            if failures:
                detail += "; undo incomplete: " + "; ".join(failures)
            journal.end_run("failed", detail)
            suffix = (f" [{left} left in SSM: run `{deregister_command(ctx.cfg.region, left)}`"
                      " with the registrar's rights]" if left else
                      f" [{again}, registered by this run, deregistered again]"
                      if again else "")
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
