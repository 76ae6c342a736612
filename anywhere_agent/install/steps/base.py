"""What every install step is: the Delta it reports and the Step interface.

`check` only reads (files, package database, unit states, one read-only cloud call), so the plan
and `--dry-run` come from the same code that decides what apply does.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from anywhere_agent.install.context import InstallContext
from anywhere_agent.secret import has_userinfo, redact_userinfo


class Verb(Enum):
    """What a step does to a unit (DAEMON_RELOAD names no unit)."""

    DAEMON_RELOAD = "daemon-reload"
    ENABLE = "enable"
    START = "start"
    RESTART = "restart"
    STOP = "stop"


@dataclass(frozen=True)
class UnitAction:
    verb: Verb
    unit: str = ""

    def __str__(self) -> str:
        return f"{self.verb.value} {self.unit}" if self.unit else self.verb.value


DAEMON_RELOAD = UnitAction(Verb.DAEMON_RELOAD)


@dataclass(frozen=True)
class Undo:
    """How to take back what a step is about to do; run, newest first, when the user's
    activation or cluster is refused, so such a run leaves no trace."""

    what: str
    action: Callable[[], None]


@dataclass
class FileChange:
    path: str
    old: str | None
    new: str | None
    mode: int = 0o644

    def diff(self) -> str:
        """The unified diff, proxy passwords masked: plans and --dry-run are output."""
        old = (self.old or "").splitlines(keepends=True)
        new = (self.new or "").splitlines(keepends=True)
        label_old = self.path if self.old is not None else "/dev/null"
        label_new = self.path if self.new is not None else "/dev/null"
        return redact_userinfo("".join(difflib.unified_diff(old, new, label_old, label_new)))


@dataclass
class Delta:
    """What a step would change; empty lists mean that kind of change is not involved."""

    summary: str
    files: list[FileChange] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    services: list[UnitAction] = field(default_factory=list)
    cloud: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "files": [{"path": f.path, "action": "remove" if f.new is None else
                       ("create" if f.old is None else "update"), "diff": f.diff()}
                      for f in self.files],
            "packages": self.packages,
            "services": [str(action) for action in self.services],
            "cloud": self.cloud,
        }


class Step:
    name = "step"
    title = ""
    # Past this step a failure undoes nothing: the activation and the cluster were accepted.
    ends_undo = False

    def applies(self, ctx: InstallContext) -> bool:
        return True

    def guard(self, ctx: InstallContext) -> None:
        """Raise a user error that no step could fix, before any step has touched the host."""

    def check(self, ctx: InstallContext) -> Delta | None:
        raise NotImplementedError

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        raise NotImplementedError

    def undo(self, ctx: InstallContext, delta: Delta) -> Undo | None:
        """Asked right before apply(delta): how to take it back (None: nothing to take back)."""
        return None

    def keeps_earlier(self, ctx: InstallContext, delta: Delta) -> bool:
        """Asked right after apply(delta): True when what it did makes this run's earlier
        changes permanent (undoing them would be wrong from now on)."""
        return False

    def findings(self) -> dict[str, Any]:
        """What the last check learned that the install report shows (read by apply)."""
        return {}




Mode = int | Callable[[str, int | None], int]


def secret_mode(content: str, current: int | None) -> int:
    """0600 when the content holds credentials (a proxy password), else the file's mode stays
    (0644 for a new file): a shared file such as dnf.conf is never loosened, only tightened."""
    if has_userinfo(content):
        return 0o600
    return current if current is not None else 0o644


def _docker_managed(ctx: InstallContext) -> bool:
    return ctx.cfg.docker_source != "none"


def _is_deb(ctx: InstallContext) -> bool:
    return ctx.platform.family == "deb"


def _is_rpm(ctx: InstallContext) -> bool:
    return ctx.platform.family == "rpm"


def _is_suse(ctx: InstallContext) -> bool:
    return ctx.platform.family == "suse"
